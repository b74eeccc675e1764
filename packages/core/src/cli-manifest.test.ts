import { describe, expect, test } from "vitest";
import { main } from "./cli.ts";
import { ManifestGate, staticManifest } from "./manifest.ts";
import { silentLogger } from "./logger.ts";

const SECRET = "cli-manifest-secret-0123456789abcdef";

async function run(args: string[], env: Record<string, string> = { SIGNING: SECRET }) {
  let stdout = "";
  let stderr = "";
  const code = await main(args, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), env });
  return { code, stdout, stderr };
}

describe("openrtc manifest sign", () => {
  test("prints a manifest a ManifestGate accepts, expiring when asked", async () => {
    const r = await run(["manifest", "sign", "--versions", "v2.0.0,v1.0.0", "--seq", "7", "--secret-env", "SIGNING", "--expires-in", "24h"]);
    expect(r.code).toBe(0);
    const manifest = JSON.parse(r.stdout) as { seq: number; active_versions: string[]; issued_at: number; expires_at: number };
    expect(manifest).toMatchObject({ seq: 7, active_versions: ["v2.0.0", "v1.0.0"] });
    expect(manifest.expires_at - manifest.issued_at).toBe(86400);
    const gate = new ManifestGate({ secrets: [SECRET], logger: silentLogger, sources: [staticManifest(r.stdout)] });
    expect(gate.isMember("v2.0.0")).toBe(true);
    expect(gate.isMember("v3.0.0")).toBe(false);
    expect(r.stdout).not.toContain(SECRET);
  });

  test("--configmap prints a ConfigMap whose data is the manifest byte for byte", async () => {
    const r = await run(["manifest", "sign", "--versions", "v2.0.0", "--seq", "3", "--secret-env", "SIGNING", "--configmap", "openrtc-manifest", "--namespace", "voice"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^apiVersion: v1\nkind: ConfigMap\nmetadata:\n {2}name: openrtc-manifest\n {2}namespace: voice\n/);
    const data = /\n {2}manifest\.json: (".*")\n$/.exec(r.stdout)?.[1];
    const gate = new ManifestGate({ secrets: [SECRET], logger: silentLogger, sources: [staticManifest(JSON.parse(data!) as string)] });
    expect(gate.current?.seq).toBe(3);
  });

  test.each([
    [["--versions", "v1", "--seq", "1", "--secret-env", "MISSING"], /MISSING is not set/],
    [["--versions", "v1", "--seq", "-1", "--secret-env", "SIGNING"], /--seq/],
    [["--versions", "v1", "--seq", "1"], /--secret-env/],
    [["--seq", "1", "--secret-env", "SIGNING"], /--versions is required/],
    [["--versions", "v1", "--seq", "1", "--secret-env", "SIGNING", "--expires-in", "soon"], /--expires-in/],
    [["--versions", "v1", "--seq", "1", "--secret-env", "SIGNING", "--configmap", "Bad_Name"], /not a valid Kubernetes name/],
    [["--versions", "v1", "--seq", "1", "--secret-env", "SIGNING", "--namespace", "x"], /go with --configmap/],
    [["--versions", "v1,v1", "--seq", "1", "--secret-env", "SIGNING"], /twice/],
  ])("usage error %#", async (args, message) => {
    const r = await run(["manifest", "sign", ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  test("unknown subcommand and help", async () => {
    expect((await run(["manifest", "verify"])).code).toBe(2);
    expect((await run(["manifest", "--help"])).stdout).toMatch(/--configmap/);
  });
});
