// Every shipped unit passes `systemd-analyze verify` with no warning at all (its warnings go to
// stderr with exit 0, so both are checked), and a broken unit is caught (the check is real).
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const deployDir = fileURLToPath(new URL("../../../deploy/systemd/", import.meta.url));
const units = readdirSync(deployDir).filter((f) => f.endsWith(".service"));
const scratch = mkdtempSync(path.join(tmpdir(), "openrtc-units-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function verify(file: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile("systemd-analyze", ["verify", file], { cwd: path.dirname(file) }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, output: `${stdout}${stderr}` });
    });
  });
}

/** The unit names to verify: a template is verified through instances (blue and green). */
function targets(unit: string): string[] {
  return unit.endsWith("@.service") ? ["v1.0.0", "v2.0.0"].map((v) => unit.replace("@.service", `@${v}.service`)) : [unit];
}

describe("deploy/systemd", () => {
  it("ships a plain unit and a blue-green template", () => {
    expect(units.sort()).toEqual(["openrtc-worker.service", "openrtc@.service"]);
  });

  it.each(units.flatMap((unit) => targets(unit).map((name) => [unit, name] as const)))("%s (as %s) passes systemd-analyze verify with no warnings", async (unit, name) => {
    copyFileSync(path.join(deployDir, unit), path.join(scratch, unit));
    expect(await verify(path.join(scratch, name))).toEqual({ code: 0, output: "" });
  });

  it.each(units)("%s has what a call-holding worker needs", (unit) => {
    const text = readFileSync(path.join(deployDir, unit), "utf8");
    for (const line of ["Type=notify", "NotifyAccess=main", "KillMode=mixed", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID", "SuccessExitStatus=SIGTERM"]) {
      expect(text.split("\n")).toContain(line);
    }
    expect(text).toMatch(/^TimeoutStopSec=\d+s$/m);
    expect(text).toMatch(/^WatchdogSec=\d+s$/m);
    // 130 (calls dropped on a forced exit) must stay a failure.
    expect(text).not.toMatch(/^SuccessExitStatus=.*\b130\b/m);
  });

  it("the check is real: an unknown key is a warning and a missing binary an error", async () => {
    const dir = mkdtempSync(path.join(scratch, "broken-"));
    const text = readFileSync(path.join(deployDir, "openrtc-worker.service"), "utf8");
    writeFileSync(path.join(dir, "unknown-key.service"), text.replace("KillMode=mixed", "KillMode=mixed\nKillModee=mixed"));
    const unknown = await verify(path.join(dir, "unknown-key.service"));
    expect(unknown.output).toContain("Unknown key 'KillModee'");
    writeFileSync(path.join(dir, "no-binary.service"), text.replace("/usr/bin/node", "/usr/bin/no-such-node"));
    expect((await verify(path.join(dir, "no-binary.service"))).code).not.toBe(0);
  });
});
