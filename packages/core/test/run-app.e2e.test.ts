// Real @livekit/agents AgentServer workers started through `runApp` (test/fixtures/runapp-worker.ts)
// against the local LiveKit-protocol dispatcher, following LiveKit's server rules (deployment
// routing, weighted selection): real processes, real signals, real sockets.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { markerDirPresence, startDispatcher, waitForEvent, type Dispatcher, type JobHandle, type JobRecord } from "@openrtc/livekit-dispatcher";
import { startChild, type Child } from "./child.ts";

// Each test boots real AgentServer processes (seconds of CPU each) on a 2-core machine shared
// with the rest of the suite: allow for a slow start rather than fail on it.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const fixture = fileURLToPath(new URL("./fixtures/runapp-worker.ts", import.meta.url));
const apiKey = "runapp-key";
const apiSecret = "runapp-secret-runapp-secret-runapp-0";
const dir = mkdtempSync(join(tmpdir(), "openrtc-runapp-"));
const children: Child[] = [];
let d: Dispatcher;
let n = 0;

interface Worker extends Child {
  controlUrl: string;
  auditFile: string;
  audit(): Record<string, unknown>[];
}

/** Starts a runApp worker; resolves once its control server is up (before registration). */
async function startWorker(args: string[], env: Record<string, string> = {}, url = d.url): Promise<Worker> {
  const auditFile = join(dir, `audit-${++n}.jsonl`);
  const c = startChild(fixture, args, {
    ...process.env,
    LIVEKIT_URL: url,
    LIVEKIT_API_KEY: apiKey,
    LIVEKIT_API_SECRET: apiSecret,
    LIVEKIT_AGENT_DEPLOYMENT: "",
    OPENRTC_DEPLOYMENT_VERSION: "v2.0.0",
    FIXTURE_AUDIT_FILE: auditFile,
    FIXTURE_SINK_DELAY_MS: "150",
    HOLD_CALL_MARKER_DIR: dir,
    LOG_LEVEL: "warn",
    ...env,
  });
  children.push(c);
  const control = await c.waitFor("CONTROL ");
  const audit = () => (existsSync(auditFile) ? readFileSync(auditFile, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);
  return { ...c, controlUrl: control.slice("CONTROL ".length), auditFile, audit };
}

async function registered(w: Worker): Promise<string> {
  return (await w.waitFor("REGISTERED ")).slice("REGISTERED ".length);
}

async function get(w: Worker, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${w.controlUrl}${path}`);
  const text = await res.text();
  return { status: res.status, body: text.startsWith("{") ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Waits (polling, bounded) for a marker file the hold-call agent writes. */
async function marker(name: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(join(dir, name))) {
    if (Date.now() > deadline) throw new Error(`marker ${name} not written within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A call whose agent holds until its caller hangs up (`hangUp`), which the caller's verdict follows. */
const call = () => d.dispatch({ metadata: JSON.stringify({ tenant: "acme" }), caller: true });

/** The caller hangs up once the agent's entry runs (a hang-up before it would be `agent_never_joined`). */
async function hangUpOnceRunning(h: JobHandle): Promise<JobRecord> {
  await marker(`${h.id}.started`);
  d.hangUp(h.id);
  return h.ended;
}

const events = (w: Worker) => w.audit().map((r) => r.event);

beforeAll(async () => {
  d = await startDispatcher({ apiKey, apiSecret, profile: "livekit", seed: 8, agentPresence: markerDirPresence(dir) });
});

afterAll(async () => {
  for (const c of children) c.child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
  await d?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("runApp start: a worker tagged v2.0.0 under LiveKit's default deployment", () => {
  let w: Worker;
  let id: string;

  beforeAll(async () => {
    w = await startWorker(["start"]);
    id = await registered(w);
  });

  test("keeps production defaults and registers with deployment \"\", not its version", async () => {
    const options = JSON.parse((await w.waitFor("OPTIONS ")).slice("OPTIONS ".length)) as Record<string, unknown>;
    expect(options).toEqual({ command: "start", production: true, loadThreshold: 0.7, deployment: "" });
    expect(d.worker(id)).toMatchObject({ deployment: "", agentName: "", connected: true });
  });

  test("readiness turns on at registration (no load report needed)", async () => {
    await expect.poll(async () => (await get(w, "/readyz")).status, { timeout: 10_000 }).toBe(200);
    expect((await get(w, "/snapshot")).body).toMatchObject({ state: "serving", deployment_version: "v2.0.0", worker_id: id });
  });

  test("takes an ordinary dispatch and puts openrtc.deployment_version on the agent participant", async () => {
    const h = call();
    const placed = await h.placed;
    expect(placed.workerId).toBe(id);
    expect(placed.participantAttributes).toMatchObject({ "openrtc.deployment_version": "v2.0.0" });
    expect((await hangUpOnceRunning(h)).fate).toBe("completed");
    // The hang-up's JobTermination reaches the job process after the caller's verdict.
    await expect.poll(async () => (await get(w, "/snapshot")).body.active_sessions, { timeout: 20_000 }).toBe(0);
  });

  test("SIGTERM mid-call: full at once, no job accepted after it, the call runs to its caller's hang-up, audit flushed, exit 0", async () => {
    const h = call();
    const placed = await h.placed;
    expect(placed.workerId).toBe(id);
    await marker(`${h.id}.started`);
    const full = waitForEvent(d.events, "worker_status", (v) => v.id === id && v.status === "full");
    w.child.kill("SIGTERM");
    await full;
    expect((await get(w, "/readyz")).status).toBe(503);
    expect((await get(w, "/livez")).status).toBe(200);
    // A second SIGTERM changes nothing.
    w.child.kill("SIGTERM");
    const late = d.dispatch({ metadata: JSON.stringify({ tenant: "acme" }), caller: true });
    const lateRecord = await late.ended;
    expect(lateRecord.workerId).toBeUndefined();
    expect(["unplaced", "abandoned"]).toContain(lateRecord.fate);
    expect((await get(w, "/snapshot")).body).toMatchObject({ draining: true, active_sessions: 1 });
    expect(w.child.exitCode).toBeNull();
    expect(await hangUpOnceRunning(h)).toMatchObject({ fate: "completed", workerId: id });
    expect(await w.exited).toEqual({ code: 0, signal: null });
    // Every record of the drain reached the (slow) sink before the process exited.
    expect(events(w)).toEqual(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]);
    expect(w.audit()[0]).toMatchObject({ actor: "signal:SIGTERM", active_sessions: 1, version: "v2.0.0" });
    expect(w.audit().at(-1)).toMatchObject({ result: "ok", dropped_sessions: 0 });
  });
});

describe("runApp with the job-token proof on (jobTokenSecret, opt-in)", () => {
  test.each([
    ["the SDK's default requestFunc", {}],
    ["an application requestFunc", { FIXTURE_USER_REQUEST: "1" }],
  ])("%s: each job process proves its job with the token LiveKit assigned, and the call runs to its hang-up", async (_name, env) => {
    const w = await startWorker(["start"], { FIXTURE_JOB_TOKENS: "1", ...env });
    expect(await w.waitFor("JOB_TOKENS ")).toBe("JOB_TOKENS true");
    const id = await registered(w);
    const h = call();
    expect((await h.placed).workerId).toBe(id);
    expect((await hangUpOnceRunning(h)).fate).toBe("completed");
    await expect.poll(async () => (await get(w, "/snapshot")).body.active_sessions, { timeout: 20_000 }).toBe(0);
    w.child.kill("SIGTERM");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    // Verified, not skipped: a refusal would have been logged (and the call cut short).
    expect(`${w.lines.join("\n")}\n${w.stderr()}`).not.toMatch(/bad_job_token|does not prove this process runs the job/);
  });
});

describe("runApp start: SIGTERM at the other moments", () => {
  test("before registration (LiveKit unreachable): drains with nothing live and exits 0", async () => {
    const closed = await freePort();
    const w = await startWorker(["start"], {}, `ws://127.0.0.1:${closed}`);
    w.child.kill("SIGTERM");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(w.lines.some((l) => l.startsWith("REGISTERED "))).toBe(false);
    expect(events(w)).toEqual(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]);
    expect(w.audit()[0]).toMatchObject({ actor: "signal:SIGTERM", active_sessions: 0 });
  });

  test("right after registration, before the first load report: full at once, exit 0", async () => {
    const w = await startWorker(["start"]);
    const id = await registered(w);
    const full = waitForEvent(d.events, "worker_status", (v) => v.id === id && v.status === "full");
    w.child.kill("SIGTERM");
    await full;
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(events(w)).toEqual(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]);
  });

  test("mid-assignment (accepted, job process not yet running): the call still runs to hang-up", async () => {
    const w = await startWorker(["start"]);
    const id = await registered(w);
    const assigned = waitForEvent(d.events, "job_assigned", (j) => j.workerId === id);
    const h = call();
    await assigned;
    w.child.kill("SIGTERM");
    expect(await hangUpOnceRunning(h)).toMatchObject({ fate: "completed", workerId: id });
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(w.audit().find((r) => r.event === "deployment.drain_started")).toMatchObject({ active_sessions: 1 });
    expect(w.audit().at(-1)).toMatchObject({ event: "worker.exited", dropped_sessions: 0 });
  });

  test("drained with a warm job process still starting: that process is killed at once, not waited on for shutdownProcessTimeout", async () => {
    // The warm process's import of the agent file is held, so it has not read its IPC yet: the
    // SDK's shutdownRequest is lost and, unaided, close() waits out shutdownProcessTimeout (5 s
    // here) before SIGKILL — or the lifecycle's beforeExit bound gives up and leaves it behind.
    const gate = mkdtempSync(join(dir, "gate-"));
    try {
      const w = await startWorker(["start"], { FIXTURE_AGENT_IMPORT_GATE: gate });
      await registered(w);
      const deadline = Date.now() + 60_000;
      let gated: string | undefined;
      while ((gated = readdirSync(gate).find((f) => f.startsWith("gated-"))) === undefined) {
        if (Date.now() > deadline) throw new Error("the warm job process never imported the agent file");
        await new Promise((r) => setTimeout(r, 50));
      }
      const pid = Number(gated.slice("gated-".length));
      w.child.kill("SIGTERM");
      expect(await w.exited).toEqual({ code: 0, signal: null });
      expect(events(w)).toEqual(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]);
      // Killed by the worker's close (and reaped) before it exited, not by the SDK's timeout.
      expect(alive(pid)).toBe(false);
      const output = `${w.lines.join("\n")}\n${w.stderr()}`;
      expect(output).not.toMatch(/did not acknowledge shutdown in time|job shutdown is taking too much time/);
      expect(output).not.toMatch(/beforeExit hook failed/);
    } finally {
      writeFileSync(join(gate, "open"), "");
    }
  });

  test("a second SIGINT exits 130 at once and records the call it dropped", async () => {
    const w = await startWorker(["start"]);
    const id = await registered(w);
    const h = call();
    expect((await h.placed).workerId).toBe(id);
    await marker(`${h.id}.started`);
    w.child.kill("SIGINT");
    await expect.poll(async () => (await get(w, "/snapshot")).body.draining).toBe(true);
    w.child.kill("SIGINT");
    expect(await w.exited).toEqual({ code: 130, signal: null });
    expect(w.audit().at(-1)).toMatchObject({ event: "worker.exited", result: "dropped", dropped_sessions: 1, actor: "signal:SIGINT" });
    expect((await h.ended).fate).toBe("cut_short");
  });
});

describe("runApp with a LiveKit Cloud worker token", () => {
  test("attaches at once and every load report stays full while draining (the SDK's own CPU load, production threshold)", async () => {
    const w = await startWorker(["start"], { LIVEKIT_WORKER_TOKEN: "cloud-worker-token" });
    const id = await registered(w);
    const options = JSON.parse((await w.waitFor("OPTIONS ")).slice("OPTIONS ".length)) as Record<string, unknown>;
    expect(options).toMatchObject({ production: true, loadThreshold: 0.7 });
    await expect.poll(async () => (await get(w, "/readyz")).status, { timeout: 10_000 }).toBe(200);
    const h = call();
    expect((await h.placed).workerId).toBe(id);
    await marker(`${h.id}.started`);
    const statuses: string[] = [];
    const onStatus = (v: { id: string; status: string }) => {
      if (v.id === id) statuses.push(v.status);
    };
    d.events.on("worker_status", onStatus);
    w.child.kill("SIGTERM");
    // The SIGTERM's "full", then two of the SDK's periodic load reports (every 2.5 s).
    await expect.poll(() => statuses.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(3);
    d.events.off("worker_status", onStatus);
    expect(statuses.every((s) => s === "full")).toBe(true);
    expect(await hangUpOnceRunning(h)).toMatchObject({ fate: "completed", workerId: id });
    expect(await w.exited).toEqual({ code: 0, signal: null });
  });
});

describe("runApp dev", () => {
  test("SIGTERM during a call drains in dev too (dev keeps the SDK's dev load threshold)", async () => {
    const w = await startWorker(["dev", "--log-level", "warn"], { FIXTURE_USER_REQUEST: "1" });
    const id = await registered(w);
    const options = JSON.parse((await w.waitFor("OPTIONS ")).slice("OPTIONS ".length)) as Record<string, unknown>;
    expect(options).toMatchObject({ command: "dev", production: false, loadThreshold: null });
    const h = call();
    const placed = await h.placed;
    expect(placed.workerId).toBe(id);
    // The application's requestFunc set its own attribute; the version is added beside it.
    expect(placed.participantAttributes).toMatchObject({ "app.attribute": "kept", "openrtc.deployment_version": "v2.0.0" });
    await marker(`${h.id}.started`);
    w.child.kill("SIGTERM");
    expect(await hangUpOnceRunning(h)).toMatchObject({ fate: "completed", workerId: id });
    expect(await w.exited).toEqual({ code: 0, signal: null });
  });
});

describe("runApp refuses a bad configuration at startup, with the rule it broke", () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ["LIVEKIT_AGENT_DEPLOYMENT=bad_name", { LIVEKIT_AGENT_DEPLOYMENT: "bad_name" }, /LIVEKIT_AGENT_DEPLOYMENT "bad_name" contains "_"/],
    ["a deployment over 64 bytes", { FIXTURE_LIVEKIT_DEPLOYMENT: "d".repeat(65) }, /at most 64 bytes/],
    ["a deploymentVersion over 128 characters", { OPENRTC_DEPLOYMENT_VERSION: `v${"9".repeat(128)}` }, /deploymentVersion.*128/],
    ["a deploymentVersion with a control character", { OPENRTC_DEPLOYMENT_VERSION: "v2\u0007" }, /deploymentVersion.*control character/],
  ];
  for (const [name, env, message] of cases) {
    test(name, async () => {
      const c = startChild(fixture, ["start"], { ...process.env, LIVEKIT_URL: d.url, LIVEKIT_API_KEY: apiKey, LIVEKIT_API_SECRET: apiSecret, ...env });
      children.push(c);
      const exit = await c.exited;
      expect(exit.code).toBe(1);
      expect(c.stderr()).toMatch(message);
    });
  }

  test("a bad command line exits 2 with the usage", async () => {
    const c = startChild(fixture, ["start", "--log-level", "loud"], { ...process.env, LIVEKIT_URL: d.url, LIVEKIT_API_KEY: apiKey, LIVEKIT_API_SECRET: apiSecret });
    children.push(c);
    expect((await c.exited).code).toBe(2);
    expect(c.stderr()).toMatch(/--log-level "loud" is not one of/);
    expect(c.stderr()).toMatch(/Usage:/);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A port with nothing listening on it. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
