import { afterEach, describe, expect, test } from "vitest";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentPool } from "../pool.ts";
import type { Logger } from "../logger.ts";
import { silentLogger } from "../logger.ts";
import { openrtcAgent } from "./agent.ts";
import { MAX_JOB_TOKEN } from "./job-token.ts";
import { MAX_CHANNEL_LINE, SESSION_KEY_ENV, SESSION_SOCKET_ENV, SessionChannel, SessionReporter, parseChannelMessage, type ChannelReply } from "./session-channel.ts";

const fixture = fileURLToPath(new URL("../../test/fixtures/job-reporter.ts", import.meta.url));
const channels: SessionChannel[] = [];
afterEach(async () => {
  await Promise.all(channels.splice(0).map((c) => c.close()));
});

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const record = (fields: object, message: string) => lines.push(`${message} ${JSON.stringify(fields)}`);
  return { lines, debug: record, info: record, warn: record, error: record };
}

/** `jobTokenSecret` "" (off, as by default): no per-job proof. */
async function setup(launchTimeoutMs = 60_000, claimTimeoutMs = 10_000, jobTokenSecret = "") {
  const logger = recordingLogger();
  const pool = new AgentPool({ deploymentVersion: "v1", logger });
  const channel = await SessionChannel.listen(pool, { launchTimeoutMs, claimTimeoutMs, exportEnv: false, jobTokenSecret });
  channels.push(channel);
  return { pool, channel, logger };
}

/** A raw peer on the real socket: sends lines, collects the parent's replies. */
async function peer(channel: SessionChannel) {
  const socket: Socket = connect(channel.path);
  await once(socket, "connect");
  socket.setEncoding("utf8");
  const replies: ChannelReply[] = [];
  let buffer = "";
  let closed = false;
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf("\n")) !== -1) {
      replies.push(JSON.parse(buffer.slice(0, newline)) as ChannelReply);
      buffer = buffer.slice(newline + 1);
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => (closed = true));
  const key = channel.env[SESSION_KEY_ENV]!;
  return {
    socket,
    replies,
    closed: () => closed,
    send: (value: unknown) => socket.write(`${typeof value === "string" ? value : JSON.stringify(value)}\n`),
    start: (job: string, withKey: string | null = key, token?: string) =>
      socket.write(`${JSON.stringify({ t: "start", job, pid: 4242, ...(withKey === null ? {} : { key: withKey }), ...(token === undefined ? {} : { token }) })}\n`),
    end: (job: string, status = "success") => socket.write(`${JSON.stringify({ t: "end", job, status })}\n`),
  };
}

/** A real job-like child process connected to the channel. */
async function jobProcess(channel: SessionChannel, jobId: string, raw = false, token?: string) {
  const child = spawn(process.execPath, ["--import", "tsx", fixture], {
    env: { ...process.env, ...channel.env, JOB_ID: jobId, RAW: raw ? "1" : "0", ...(token === undefined ? {} : { JOB_TOKEN: token }) },
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
  return { child, saw, output: () => out, send: (line: string) => child.stdin.write(`${line}\n`) };
}

const apiSecret = "session-channel-secret-session-channel-0";
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A job's room-join token as LiveKit mints it: HS256 with the worker's API secret. */
function jobToken(room: string, sub: string, options: { secret?: string; alg?: string; exp?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: options.alg ?? "HS256", typ: "JWT" })}.${b64({ iss: "APIkey", sub, nbf: now, exp: options.exp ?? now + 3600, video: { roomJoin: true, agent: true, room } })}`;
  return `${input}.${createHmac("sha256", options.secret ?? apiSecret).update(input).digest("base64url")}`;
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

  test("close removes the socket file and its directory; a reporter without a parent is a no-op", async () => {
    const { channel } = await setup();
    expect(existsSync(channel.path)).toBe(true);
    await channels.pop()!.close();
    expect(existsSync(channel.path)).toBe(false);
    expect(existsSync(dirname(channel.path))).toBe(false);
    expect(await SessionReporter.connect("x", "")).toBeUndefined();
  });
});

describe("session channel: schema (every line validated, bad ones dropped with a log line)", () => {
  test("null, arrays, garbage, overlong lines and invalid fields are dropped; the parent and the call live on", async () => {
    const { pool, channel, logger } = await setup();
    const session = pool.startSession({ jobId: "j3" });
    const p = await peer(channel);
    p.start("j3");
    await expect.poll(() => p.replies).toEqual([{ t: "ok", job: "j3" }]);
    for (const line of ["null", "[]", "42", '"s"', "this is not json", "{}", '{"t":"end"}', '{"t":"end","job":"j3","status":"exploded"}', '{"t":"end","job":"j3","status":"success","error":7}', '{"t":"start","job":"j3","pid":-1}', '{"t":"hello","job":"j3"}']) {
      p.send(line);
    }
    p.send("x".repeat(100_000)); // no newline for a long while, then one
    p.end("someone-else");
    await expect.poll(() => logger.lines.filter((l) => l.includes("malformed message dropped")).length).toBeGreaterThanOrEqual(3);
    expect(session.ended).toBe(false);
    expect(pool.activeSessions).toBe(1);
    p.end("j3", "failed");
    await expect.poll(() => session.ended).toBe(true);
    expect(session.outcome?.status).toBe("failed");
    p.socket.destroy();
  });

  test.each([
    ["null", /not a JSON object/],
    ["[1]", /not a JSON object/],
    ['{"t":"start","job":"","pid":1}', /job/],
    [`{"t":"start","job":"${"j".repeat(300)}","pid":1}`, /job/],
    ['{"t":"start","job":"j","pid":1.5}', /pid/],
    ['{"t":"start","job":"j","pid":1,"key":1}', /key/],
    ['{"t":"end","job":"j","status":"ok"}', /status/],
    ['{"t":"nope","job":"j"}', /t must be/],
    ["{", /not JSON/],
  ])("parseChannelMessage(%s) is refused", (line, problem) => {
    const parsed = parseChannelMessage(line);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problem).toMatch(problem);
  });

  test("parseChannelMessage bounds an end's error text", () => {
    const parsed = parseChannelMessage(JSON.stringify({ t: "end", job: "j", status: "failed", error: "e".repeat(5000) }));
    expect(parsed.ok && parsed.message.t === "end" && parsed.message.error!.length).toBe(2001);
  });
});

describe("session channel: a connection may end only its own session", () => {
  test("the socket lives in a directory only the worker's user can enter; the socket is 0600", async () => {
    const { channel } = await setup();
    expect(statSync(dirname(channel.path)).mode & 0o777).toBe(0o700);
    expect(statSync(channel.path).mode & 0o777).toBe(0o600);
  });

  test("listen exports the socket path and the key for job processes by default", async () => {
    const saved = { socket: process.env[SESSION_SOCKET_ENV], key: process.env[SESSION_KEY_ENV] };
    try {
      const pool = new AgentPool({ logger: silentLogger });
      const channel = await SessionChannel.listen(pool);
      channels.push(channel);
      expect(process.env[SESSION_SOCKET_ENV]).toBe(channel.path);
      expect(process.env[SESSION_KEY_ENV]).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      for (const [name, value] of [[SESSION_SOCKET_ENV, saved.socket], [SESSION_KEY_ENV, saved.key]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  test("a start without the channel key, or with a wrong one, is refused and the connection closed", async () => {
    const { pool, channel } = await setup();
    const session = pool.startSession({ jobId: "j" });
    for (const key of [null, "0".repeat(64), "not-hex"]) {
      const p = await peer(channel);
      p.start("j", key);
      await expect.poll(() => p.closed()).toBe(true);
      expect(p.replies).toEqual([expect.objectContaining({ t: "refused", job: "j", reason: "bad_key" })]);
    }
    expect(session.ended).toBe(false);
  });

  test("a second claim of a live job is refused; its end and its close do nothing; the claimant still ends it", async () => {
    const { pool, channel } = await setup();
    const session = pool.startSession({ jobId: "j" });
    const owner = await peer(channel);
    owner.start("j");
    await expect.poll(() => owner.replies.length).toBe(1);
    const intruder = await peer(channel);
    intruder.start("j");
    intruder.end("j", "failed");
    await expect.poll(() => intruder.closed()).toBe(true);
    expect(intruder.replies).toEqual([expect.objectContaining({ t: "refused", reason: "already_claimed" })]);
    expect(session.ended).toBe(false);
    owner.end("j", "success");
    await expect.poll(() => session.outcome?.status).toBe("success");
  });

  test("a bound connection cannot end another job, nor claim a second one", async () => {
    const { pool, channel } = await setup();
    const a = pool.startSession({ jobId: "a" });
    const b = pool.startSession({ jobId: "b" });
    const p = await peer(channel);
    p.start("a");
    p.start("b");
    p.end("b", "failed");
    await expect.poll(() => p.replies.length).toBe(1);
    p.send(""); // round trip: everything above was handled before this close
    p.socket.end();
    await expect.poll(() => a.ended).toBe(true);
    expect(a.outcome?.status).toBe("failed");
    expect(b.ended).toBe(false);
  });

  test("an end before any start is dropped; a connection that never claims is closed after the claim timeout", async () => {
    const { pool, channel } = await setup(60_000, 50);
    const session = pool.startSession({ jobId: "j" });
    const p = await peer(channel);
    p.end("j", "failed");
    await expect.poll(() => p.closed()).toBe(true);
    expect(session.ended).toBe(false);
  });

  test("a connection's claim covers the session it claimed, not a later session of the same job id", async () => {
    const { pool, channel } = await setup();
    const first = pool.startSession({ jobId: "j" });
    const p = await peer(channel);
    p.start("j");
    await expect.poll(() => p.replies.length).toBe(1);
    first.end({ status: "success" }); // ended by the parent (e.g. LiveKit terminated the job)
    const second = pool.startSession({ jobId: "j" });
    p.end("j", "failed");
    p.socket.end();
    await expect.poll(() => p.closed()).toBe(true);
    expect(second.ended).toBe(false);
  });

  test("a job process that starts after its launch timeout ended the session is refused (no_session)", async () => {
    const { pool, channel } = await setup(20);
    const session = pool.startSession({ jobId: "late" });
    channel.expectLaunch(session);
    await expect.poll(() => session.outcome?.status).toBe("cancelled");
    const reporter = await SessionReporter.connect("late", channel.path, { key: channel.env[SESSION_KEY_ENV] });
    expect(reporter?.refused).toBe(true);
    expect(reporter?.refusal).toMatchObject({ reason: "no_session" });
    await reporter?.end("success"); // a no-op: nothing to end
    expect(pool.runtimeSnapshot().activeSessions).toBe(0);
  });

  test("the agent wrapper shuts a refused job down with a clear reason and never runs its entry", async () => {
    const { channel } = await setup();
    const saved = { ...process.env };
    Object.assign(process.env, channel.env);
    try {
      let entryRan = false;
      const agent = openrtcAgent({ entry: async () => void (entryRan = true) }, { logger: silentLogger });
      const shutdowns: string[] = [];
      const callbacks: (() => Promise<void>)[] = [];
      // The parts of JobContext the wrapper touches; the socket and the parent are real.
      const ctx = {
        job: { id: "unknown-job", agentName: "a", metadata: "", room: { name: "r" } },
        addShutdownCallback: (cb: () => Promise<void>) => callbacks.push(cb),
        shutdown: (reason: string) => shutdowns.push(reason),
      };
      await (agent.entry as (c: unknown) => Promise<void>)(ctx);
      expect(entryRan).toBe(false);
      expect(callbacks).toEqual([]);
      expect(shutdowns).toEqual([expect.stringMatching(/^openrtc: the worker refused this job process \(no_session\)/)]);
    } finally {
      for (const name of [SESSION_SOCKET_ENV, SESSION_KEY_ENV]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });

  test("the agent wrapper runs an accepted job and reports its end", async () => {
    const { pool, channel } = await setup();
    const session = pool.startSession({ jobId: "ok-job" });
    const saved = { ...process.env };
    Object.assign(process.env, channel.env);
    try {
      const agent = openrtcAgent({ entry: async () => {} }, { logger: silentLogger });
      const callbacks: (() => Promise<void>)[] = [];
      const ctx = {
        job: { id: "ok-job", agentName: "a", metadata: "", room: { name: "r" } },
        addShutdownCallback: (cb: () => Promise<void>) => callbacks.push(cb),
        shutdown: () => {},
      };
      await (agent.entry as (c: unknown) => Promise<void>)(ctx);
      expect(session.ended).toBe(false);
      await Promise.all(callbacks.map((cb) => cb()));
      await expect.poll(() => session.outcome?.status).toBe("success");
    } finally {
      for (const name of [SESSION_SOCKET_ENV, SESSION_KEY_ENV]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });
});

describe("session channel: each job process proves its own job with the job's LiveKit token", () => {
  test("a sibling holding the channel key but a token for another room is refused bad_job_token; the real process still claims and ends it", async () => {
    const { pool, channel, logger } = await setup(60_000, 10_000, apiSecret);
    expect(channel.verifiesJobTokens).toBe(true);
    const victim = pool.startSession({ jobId: "AJ_victim", roomName: "room-victim" });
    channel.expectLaunch(victim);
    const siblingToken = jobToken("room-sibling", "agent-AJ_sibling");
    const sibling = await jobProcess(channel, "AJ_victim", false, siblingToken);
    await sibling.saw("REFUSED bad_job_token");
    const real = await jobProcess(channel, "AJ_victim", false, jobToken("room-victim", "agent-AJ_victim"));
    expect(real.output()).not.toContain("REFUSED");
    sibling.child.kill("SIGKILL");
    await once(sibling.child, "exit");
    expect(victim.ended).toBe(false);
    real.send("end success");
    await real.saw("ENDED");
    await expect.poll(() => victim.outcome?.status).toBe("success");
    const warning = logger.lines.find((l) => l.includes("job token does not prove"));
    expect(warning).toMatch(/another room/);
    for (const part of siblingToken.split(".")) expect(logger.lines.join("\n")).not.toContain(part);
  });

  test.each([
    ["no token", undefined],
    ["a forged signature", jobToken("r", "agent-j", { secret: "not-the-api-secret" })],
    ["alg none", `${b64({ alg: "none" })}.${b64({ sub: "agent-j", exp: 9e9, video: { room: "r" } })}.`],
    ["an expired token", jobToken("r", "agent-j", { exp: Math.floor(Date.now() / 1000) - 3600 })],
    ["a token for another room", jobToken("other", "agent-j")],
  ])("%s is refused bad_job_token and the connection closed; the session stays live and claimable", async (_name, token) => {
    const { pool, channel } = await setup(60_000, 10_000, apiSecret);
    const session = pool.startSession({ jobId: "j", roomName: "r" });
    const intruder = await peer(channel);
    intruder.start("j", undefined, token);
    intruder.end("j", "failed");
    await expect.poll(() => intruder.closed()).toBe(true);
    expect(intruder.replies).toEqual([expect.objectContaining({ t: "refused", job: "j", reason: "bad_job_token" })]);
    expect(session.ended).toBe(false);
    const owner = await peer(channel);
    owner.start("j", undefined, jobToken("r", "agent-j"));
    await expect.poll(() => owner.replies).toEqual([{ t: "ok", job: "j" }]);
    owner.end("j", "success");
    await expect.poll(() => session.outcome?.status).toBe("success");
  });

  test("the key is still checked first: a valid token with a wrong key is bad_key", async () => {
    const { pool, channel } = await setup(60_000, 10_000, apiSecret);
    pool.startSession({ jobId: "j", roomName: "r" });
    const p = await peer(channel);
    p.start("j", "0".repeat(64), jobToken("r", "agent-j"));
    await expect.poll(() => p.closed()).toBe(true);
    expect(p.replies).toEqual([expect.objectContaining({ reason: "bad_key" })]);
  });

  test("sub: the identity given to expectLaunch must match; without one, another live job's default identity in the same room is refused", async () => {
    const { pool, channel } = await setup(60_000, 10_000, apiSecret);
    const a = pool.startSession({ jobId: "AJ_a", roomName: "shared" });
    const b = pool.startSession({ jobId: "AJ_b", roomName: "shared" });
    channel.expectLaunch(a, { identity: "custom-a" });
    channel.expectLaunch(b);
    // B's process presenting its own token for A (same room): A's accepted identity is custom-a.
    const wrongForA = await peer(channel);
    wrongForA.start("AJ_a", undefined, jobToken("shared", "agent-AJ_b"));
    await expect.poll(() => wrongForA.replies).toEqual([expect.objectContaining({ reason: "bad_job_token", message: expect.stringMatching(/another participant identity/) })]);
    // For B no identity was recorded: a token whose sub is agents-js' default identity of another
    // live job (A's, agent-AJ_a) is that job's, and is refused.
    const wrongForB = await peer(channel);
    wrongForB.start("AJ_b", undefined, jobToken("shared", "agent-AJ_a"));
    await expect.poll(() => wrongForB.replies).toEqual([expect.objectContaining({ reason: "bad_job_token", message: expect.stringMatching(/another job's participant identity/) })]);
    const ownerA = await peer(channel);
    ownerA.start("AJ_a", undefined, jobToken("shared", "custom-a"));
    const ownerB = await peer(channel);
    ownerB.start("AJ_b", undefined, jobToken("shared", "agent-AJ_b"));
    await expect.poll(() => [ownerA.replies, ownerB.replies]).toEqual([[{ t: "ok", job: "AJ_a" }], [{ t: "ok", job: "AJ_b" }]]);
    expect([a.ended, b.ended]).toEqual([false, false]);
  });

  test("no secret configured: a start without a token claims (channel key and first claim), and the parent says so once", async () => {
    const { pool, channel, logger } = await setup();
    expect(channel.verifiesJobTokens).toBe(false);
    expect(logger.lines.filter((l) => l.includes("job tokens are not verified"))).toHaveLength(1);
    const session = pool.startSession({ jobId: "j", roomName: "r" });
    const p = await peer(channel);
    p.start("j", undefined, jobToken("another-room", "agent-x", { secret: "whatever" })); // not checked
    await expect.poll(() => p.replies).toEqual([{ t: "ok", job: "j" }]);
    const second = await peer(channel);
    second.start("j");
    await expect.poll(() => second.replies).toEqual([expect.objectContaining({ reason: "already_claimed" })]);
    p.end("j", "success");
    await expect.poll(() => session.outcome?.status).toBe("success");
  });

  test("off unless jobTokenSecret is given: LIVEKIT_API_SECRET alone does not turn it on (LiveKit Cloud may sign with another key)", async () => {
    const saved = process.env.LIVEKIT_API_SECRET;
    try {
      process.env.LIVEKIT_API_SECRET = apiSecret;
      const pool = new AgentPool({ logger: silentLogger });
      const unset = await SessionChannel.listen(pool, { exportEnv: false });
      channels.push(unset);
      expect(unset.verifiesJobTokens).toBe(false);
      const channel = await SessionChannel.listen(pool, { exportEnv: false, jobTokenSecret: apiSecret });
      channels.push(channel);
      expect(channel.verifiesJobTokens).toBe(true);
      pool.startSession({ jobId: "j", roomName: "r" });
      const reporter = await SessionReporter.connect("j", channel.path, { key: channel.env[SESSION_KEY_ENV], token: jobToken("r", "agent-j") });
      expect(reporter?.refused).toBe(false);
      expect(reporter?.reply).toEqual({ t: "ok", job: "j" });
      const off = await SessionChannel.listen(pool, { exportEnv: false, jobTokenSecret: "" });
      channels.push(off);
      expect(off.verifiesJobTokens).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.LIVEKIT_API_SECRET;
      else process.env.LIVEKIT_API_SECRET = saved;
    }
  });

  test("the reporter leaves out an oversized token (the start still parses and is refused at once)", async () => {
    const { pool, channel } = await setup(60_000, 10_000, apiSecret);
    pool.startSession({ jobId: "j", roomName: "r" });
    const reporter = await SessionReporter.connect("j", channel.path, { key: channel.env[SESSION_KEY_ENV], token: "a".repeat(MAX_JOB_TOKEN + 1), replyTimeoutMs: 2000 });
    expect(reporter?.refusal).toMatchObject({ reason: "bad_job_token", message: expect.stringMatching(/no job token/) });
  });

  test("parseChannelMessage: start.token is a bounded string; a start with a token of the maximum size fits in a line", () => {
    for (const token of [7, null, "a".repeat(MAX_JOB_TOKEN + 1)]) {
      const parsed = parseChannelMessage(JSON.stringify({ t: "start", job: "j", pid: 1, token }));
      expect(parsed).toMatchObject({ ok: false, problem: expect.stringMatching(/token/) });
    }
    const line = JSON.stringify({ t: "start", job: "j".repeat(256), pid: 2 ** 31, key: "f".repeat(64), token: "a".repeat(MAX_JOB_TOKEN) });
    expect(line.length).toBeLessThanOrEqual(MAX_CHANNEL_LINE);
    expect(parseChannelMessage(line)).toMatchObject({ ok: true, message: { t: "start", token: "a".repeat(MAX_JOB_TOKEN) } });
  });

  test("the agent wrapper sends ctx.info.token: a job with its own token runs, one with another job's token is shut down", async () => {
    const { pool, channel } = await setup(60_000, 10_000, apiSecret);
    const session = pool.startSession({ jobId: "AJ_ok", roomName: "room-ok" });
    const saved = { ...process.env };
    Object.assign(process.env, channel.env);
    try {
      const runs: string[] = [];
      const agent = openrtcAgent({ entry: async (c: { job: { id: string } }) => void runs.push(c.job.id) }, { logger: silentLogger });
      const context = (id: string, room: string, token: string) => {
        const shutdowns: string[] = [];
        const callbacks: (() => Promise<void>)[] = [];
        return {
          shutdowns,
          callbacks,
          ctx: {
            job: { id, agentName: "a", metadata: "", room: { name: room } },
            info: { token, url: "ws://x", workerId: "w" },
            addShutdownCallback: (cb: () => Promise<void>) => callbacks.push(cb),
            shutdown: (reason: string) => shutdowns.push(reason),
          },
        };
      };
      const stolen = context("AJ_ok", "room-ok", jobToken("room-elsewhere", "agent-AJ_other"));
      await (agent.entry as (c: unknown) => Promise<void>)(stolen.ctx);
      expect(stolen.shutdowns).toEqual([expect.stringMatching(/^openrtc: the worker refused this job process \(bad_job_token\)/)]);
      const own = context("AJ_ok", "room-ok", jobToken("room-ok", "agent-AJ_ok"));
      await (agent.entry as (c: unknown) => Promise<void>)(own.ctx);
      expect(runs).toEqual(["AJ_ok"]);
      await Promise.all(own.callbacks.map((cb) => cb()));
      await expect.poll(() => session.outcome?.status).toBe("success");
    } finally {
      for (const name of [SESSION_SOCKET_ENV, SESSION_KEY_ENV]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });
});
