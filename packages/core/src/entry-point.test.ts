import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { isMainModule } from "./entry-point.ts";

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("isMainModule", () => {
  it("is false for a module imported by another (here: by vitest's runner)", () => {
    expect(isMainModule(import.meta.url)).toBe(false);
  });

  it("is false with no script, and for a script path that does not exist", () => {
    expect(isMainModule(import.meta.url, undefined)).toBe(false);
    expect(isMainModule(import.meta.url, "")).toBe(false);
    expect(isMainModule(import.meta.url, "/nonexistent/openrtc-script.js")).toBe(false);
  });

  it("is true for the started script, also when started through a symlink (an npm bin)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "openrtc-entry-"));
    dirs.push(dir);
    const script = join(dir, "script.mjs");
    const helper = pathToFileURL(fileURLToPath(new URL("./entry-point.ts", import.meta.url))).href;
    await writeFile(script, `const { isMainModule } = await import(${JSON.stringify(helper)});\nconsole.log(String(isMainModule(import.meta.url)));\n`);
    await symlink(script, join(dir, "bin"));
    for (const started of [script, join(dir, "bin")]) {
      const { stdout } = await run(process.execPath, ["--import", "tsx", started]);
      expect(stdout.trim(), started).toBe("true");
    }
  });
});
