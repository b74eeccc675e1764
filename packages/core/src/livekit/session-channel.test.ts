import { afterEach, describe, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { AgentPool } from "../pool.ts";
import { silentLogger } from "../logger.ts";
import { SessionChannel, SessionReporter } from "./session-channel.ts";

const fixture = fileURLToPath(new URL("../../test/fixtures/job-reporter.ts", import.meta.url));
const channels: SessionChannel[] = [];
afterEach(async () => {
  await Promise.all(channels.splice(0).map((c) => c.close()));
});

async function setup(launchTimeoutMs = 60_000) {
  const pool = new AgentPool({ deploymentVersion: "v1", logger: silentLogger });
  const channel = await SessionChannel.listen(pool, { launchTimeoutMs });
  channels.push(channel);
  return { pool, channel };
}

/** A real job-like child process connected to the channel. */
async function jobProcess(channel: SessionChannel, jobId: string, raw = false) {
  const child = spawn(process.execPath, ["--import", "tsx", fixture], {
    env: { ...process.env, OPENRTC_SESSION_SOCKET: channel.path, JOB_ID: jobId, RAW: raw ? "1" : "0" },
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  const saw = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => out.includes(text) && resolve();
      child.stdout.on("data", (d) => {
        out += d.toString();
        check();
      });
      child.on("exit", () => (out.includes(text) ? resolve() : reject(new Error(`job process exited before ${text}: ${out}`))));
      check();
    });
  await saw("CONNECTED");
  return { child, saw, send: (line: string) => child.stdin.write(`${line}\n`) };
}

describe("session channel (real unix socket, real child processes)", () => {
  test("a job process reporting its end ends the session with its status", async () => {
    const { pool, channel } = await setup();
    const session = pool.startSession({ jobId: "j1" });
    channel.expectLaunch(session);
    const job = await jobProcess(channel, "j1");
    job.send("end failed");
    await job.saw("ENDED");
    await expect.poll(() => session.ended).toBe(true);
    expect(session.outcome).toMatchObject({ status: "failed", error: "boom" });
  });

  test("a job process killed mid-call ends its session as failed, and a drain completes", async () => {
    const { pool, channel } = await setup();
    const session = pool.startSession({ jobId: "j2" });
    channel.expectLaunch(session);
    const job = await jobProcess(channel, "j2");
    pool.beginDrain();
    job.child.kill("SIGKILL");
    await once(job.child, "exit");
    await pool.drained;
    expect(session.outcome).toMatchObject({ status: "failed", error: "job process exited while the call was live" });
    expect(pool.runtimeSnapshot().totalSessionFailures).toBe(1);
  });

  test("an accepted job whose process never starts ends as cancelled after the launch timeout", async () => {
    const { pool, channel } = await setup(50);
    const session = pool.startSession({ jobId: "never" });
    channel.expectLaunch(session);
    await expect.poll(() => session.outcome?.status).toBe("cancelled");
    expect(session.outcome?.error).toMatch(/never started/);
  });

  test("malformed lines and invalid statuses never take the parent down", async () => {
    const { pool, channel } = await setup();
    const session = pool.startSession({ jobId: "j3" });
    const job = await jobProcess(channel, "j3", true);
    job.send("this is not json");
    job.send(JSON.stringify({ t: "start", job: "j3", pid: 1 }));
    job.send(JSON.stringify({ t: "end", job: "j3", status: "exploded" }));
    await expect.poll(() => session.ended).toBe(true);
    expect(session.outcome).toMatchObject({ status: "failed" });
    expect(session.outcome?.error).toMatch(/invalid outcome/);
    job.child.kill();
  });

  test("close removes the socket file; a reporter without a parent is a no-op", async () => {
    const { channel } = await setup();
    expect(existsSync(channel.path)).toBe(true);
    await channels.pop()!.close();
    expect(existsSync(channel.path)).toBe(false);
    expect(await SessionReporter.connect("x", "")).toBeUndefined();
  });
});
