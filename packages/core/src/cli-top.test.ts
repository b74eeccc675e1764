import { afterEach, describe, expect, test } from "vitest";
import { AgentPool } from "./pool.ts";
import { createControlServer, type ControlServer } from "./control-server.ts";
import { silentLogger } from "./logger.ts";
import { main } from "./cli.ts";

const servers: ControlServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function io() {
  const out = { stdout: "", stderr: "" };
  return { out, io: { stdout: (t: string) => (out.stdout += t), stderr: (t: string) => (out.stderr += t), env: {} } };
}

async function worker(version: string, live: number, drain = false) {
  const pool = new AgentPool({ deploymentVersion: version, workerId: `w-${version}`, logger: silentLogger });
  for (let i = 0; i < live; i++) pool.startSession({ jobId: `j${i}` });
  pool.markReady();
  if (drain) pool.beginDrain();
  const server = await createControlServer(pool);
  servers.push(server);
  return server.url;
}

describe("openrtc top", () => {
  test("--once renders each worker's three deploy signals and live calls per version", async () => {
    const a = await worker("v1.0.0", 3, true);
    const b = await worker("v2.0.0", 1);
    const { out, io: cliIo } = io();
    expect(await main(["top", a, b, "--once"], cliIo)).toBe(0);
    const lines = out.stdout.split("\n");
    expect(lines[0]).toMatch(/^WORKER\s+VERSION\s+STATE\s+DRAINING\s+ACTIVE/);
    expect(lines[1]).toMatch(/^w-v1\.0\.0\s+v1\.0\.0\s+draining\s+true\s+3/);
    expect(lines[2]).toMatch(/^w-v2\.0\.0\s+v2\.0\.0\s+serving\s+false\s+1/);
    expect(out.stdout).toContain("v1.0.0: 3 live, v2.0.0: 1 live");
  });

  test("--once --json prints the snapshots", async () => {
    const a = await worker("v2.0.0", 2);
    const { out, io: cliIo } = io();
    expect(await main(["top", a, "--once", "--json"], cliIo)).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual([expect.objectContaining({ deployment_version: "v2.0.0", active_sessions: 2, draining: false })]);
  });

  test("an unreachable worker is shown and makes --once exit 1", async () => {
    const a = await worker("v1", 0);
    const { out, io: cliIo } = io();
    expect(await main(["top", a, "http://127.0.0.1:1", "--once"], cliIo)).toBe(1);
    expect(out.stdout).toMatch(/http:\/\/127\.0\.0\.1:1\s+-\s+unreachable/);
  });

  test.each([[["top"]], [["top", "not a url", "--once"]], [["top", "http://x", "--interval", "0"]], [["top", "http://x", "--json"]], [["top", "--bogus"]]])(
    "usage errors exit 2: %j",
    async (argv) => {
      const { out, io: cliIo } = io();
      expect(await main(argv, cliIo)).toBe(2);
      expect(out.stderr).toMatch(/openrtc top: /);
    },
  );
});
