// profile "livekit" with real @livekit/agents AgentServer processes (test/fixtures/worker.mjs,
// the hold-call agent holding until shut down). Tests share one dispatcher and run in order.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDispatcher } from "../src/dispatcher.ts";
import { markerDirPresence } from "../src/presence.ts";
import { spawnWorker, type SpawnedWorker } from "../src/spawn-worker.ts";
import type { Dispatcher } from "../src/types.ts";
import { waitForEvent } from "../src/wait-for-event.ts";

const apiKey = "lk-e2e-key";
const apiSecret = "lk-e2e-secret-lk-e2e-secret-lk-e2e-0";
const markers = mkdtempSync(join(tmpdir(), "lkd-lk-e2e-"));
const spawned: SpawnedWorker[] = [];
let d: Dispatcher;

function start(env: Record<string, string | undefined>): SpawnedWorker {
  const w = spawnWorker({ env: { LIVEKIT_URL: d.url, LIVEKIT_API_KEY: apiKey, LIVEKIT_API_SECRET: apiSecret, HOLD_CALL_MARKER_DIR: markers, ...env } });
  spawned.push(w);
  return w;
}

async function marker(name: string, timeoutMs = 25_000): Promise<string> {
  const path = join(markers, name);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`marker ${name} not written within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return readFileSync(path, "utf8");
}

const held = JSON.stringify({ tenant: "acme" }); // no duration_ms: the agent holds until shut down
let plain: SpawnedWorker;
let plainId: string;
let blueId: string;

beforeAll(async () => {
  d = await startDispatcher({ apiKey, apiSecret, profile: "livekit", seed: 9, reconnectGraceMs: 15_000, agentPresence: markerDirPresence(markers) });
  plain = start({ LIVEKIT_AGENT_DEPLOYMENT: undefined });
  const blue = start({ LIVEKIT_AGENT_DEPLOYMENT: "blue" });
  [plainId, blueId] = await Promise.all([plain.registered, blue.registered]);
});

afterAll(async () => {
  for (const w of spawned) w.kill("SIGKILL", { group: true });
  await Promise.all(spawned.map((w) => w.exited));
  await d?.close();
  rmSync(markers, { recursive: true, force: true });
});

describe("profile livekit, real AgentServer workers", () => {
  // pkg/agent/worker.go HandleRegister + livekit/protocol agent/environment.go ValidateDeployment
  it("LIVEKIT_AGENT_DEPLOYMENT=bad_name: registration refused, the worker never registers", async () => {
    const rejected = waitForEvent(d.events, "registration_rejected", (r) => r.deployment === "bad_name");
    const bad = start({ LIVEKIT_AGENT_DEPLOYMENT: "bad_name" });
    expect((await rejected)[0]).toMatchObject({ reason: "deployment contains reserved character '_'", version: "1.9.0" });
    bad.kill("SIGKILL", { group: true });
    await bad.exited;
    expect(d.workers().map((w) => w.deployment).sort()).toEqual(["", "blue"]);
  });

  // pkg/service/agentservice.go JobRequest / workerKey
  it("an ordinary dispatch goes only to the worker with deployment \"\"; deployment blue only to blue", async () => {
    const a = d.dispatch({ metadata: held, caller: true });
    const b = d.dispatch({ metadata: held, caller: true, deployment: "blue" });
    expect((await a.placed).workerId).toBe(plainId);
    expect((await b.placed).workerId).toBe(blueId);
    await Promise.all([marker(`${a.id}.started`), marker(`${b.id}.started`)]);
    d.hangUp(a.id);
    d.hangUp(b.id);
    expect(await a.ended).toMatchObject({ fate: "completed", workerDeployment: "" });
    expect(await b.ended).toMatchObject({ fate: "completed", workerDeployment: "blue" });
    // The hang-up closed the room: JobTermination → shutdownRequest → the job process shut down.
    await Promise.all([marker(`${a.id}.ended`), marker(`${b.id}.ended`)]);
  });

  it("a job process SIGKILLed mid-call: the agent left the room → cut short (job_process_killed), JS_FAILED", async () => {
    const h = d.dispatch({ metadata: held, hangUpAfterMs: 120_000 });
    await h.placed;
    const pid = Number(await marker(`${h.id}.started`));
    process.kill(pid, "SIGKILL");
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "job_process_killed", serverStatus: "JS_FAILED", error: "agent worker left the room" });
  });

  // pkg/service/agentservice.go HandleConnection/deregisterWorker: a new registration, a new id
  it("a dropped socket: the worker re-registers under a new id; its call survives and completes at hang-up", async () => {
    const h = d.dispatch({ metadata: held, caller: true });
    expect((await h.placed).workerId).toBe(plainId);
    await marker(`${h.id}.started`);
    const again = waitForEvent(d.events, "worker_registered", (w) => w.reconnectOf === plainId, 20_000);
    d.dropConnection(plainId);
    const [fresh] = await again;
    expect(fresh.id).not.toBe(plainId);
    expect(d.job(h.id)).toMatchObject({ state: "running", serverForgot: true, hostWorkerId: fresh.id });
    d.hangUp(h.id);
    expect(await h.ended).toMatchObject({ fate: "completed", endReason: "caller_hung_up" });
    await marker(`${h.id}.ended`); // the termination reached the job through the new connection
    plainId = fresh.id;
  });

  it("the worker closes (AgentServer.close()) mid-call → cut short (worker_gone)", async () => {
    const h = d.dispatch({ metadata: held, hangUpAfterMs: 120_000 });
    expect((await h.placed).workerId).toBe(plainId);
    await marker(`${h.id}.started`);
    plain.send({ type: "close" });
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "worker_gone", endReason: "worker_closed" });
    const s = d.summary();
    expect(s.byFate).toMatchObject({ completed: 3, cut_short: 2 });
    expect(s.cutShortByCause).toMatchObject({ job_process_killed: 1, worker_gone: 1 });
  });
});
