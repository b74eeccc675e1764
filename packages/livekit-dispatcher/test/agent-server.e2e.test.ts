// Real @livekit/agents AgentServer processes (test/fixtures/worker.mjs) against the dispatcher.
// The tests share one dispatcher and a few workers and run in order: each test leaves the
// fleet in the state the next one starts from (documented per test).
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDispatcher } from "../src/dispatcher.ts";
import { spawnWorker, type SpawnedWorker } from "../src/spawn-worker.ts";
import type { Dispatcher } from "../src/types.ts";
import { waitForEvent } from "../src/wait-for-event.ts";

const apiKey = "e2e-key";
const apiSecret = "e2e-secret-e2e-secret-e2e-secret-00";
const markers = mkdtempSync(join(tmpdir(), "lkd-e2e-"));
const spawned: SpawnedWorker[] = [];
let d: Dispatcher;

function start(env: Record<string, string>, secret = apiSecret): SpawnedWorker {
  const w = spawnWorker({
    env: {
      LIVEKIT_URL: d.url,
      LIVEKIT_API_KEY: apiKey,
      LIVEKIT_API_SECRET: secret,
      HOLD_CALL_MARKER_DIR: markers,
      ...env,
    },
  });
  spawned.push(w);
  return w;
}

/** Waits (polling, bounded) for a marker file the hold-call agent writes; returns its content. */
async function marker(name: string, timeoutMs = 20_000): Promise<string> {
  const path = join(markers, name);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`marker ${name} not written within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return readFileSync(path, "utf8");
}

const call = (durationMs: number) => JSON.stringify({ tenant: "acme", duration_ms: durationMs });

let reject: SpawnedWorker;
let blue: SpawnedWorker;
let green: SpawnedWorker;
let victim: SpawnedWorker;
let victimId: string;
const ids: Record<string, string> = {};

beforeAll(async () => {
  d = await startDispatcher({ apiKey, apiSecret, profile: "legacy", reconnectGraceMs: 10_000 });
  // The rejecting worker registers first, so least-jobs offers every job to it first.
  reject = start({ WORKER_REJECT: "1", LIVEKIT_AGENT_DEPLOYMENT: "reject" });
  ids["reject"] = await reject.registered;
  blue = start({ LIVEKIT_AGENT_DEPLOYMENT: "blue" });
  green = start({ LIVEKIT_AGENT_DEPLOYMENT: "green" });
  ids["blue"] = await blue.registered;
  ids["green"] = await green.registered;
});

afterAll(async () => {
  for (const w of spawned) w.kill("SIGKILL", { group: true });
  await Promise.all(spawned.map((w) => w.exited));
  await d?.close();
  rmSync(markers, { recursive: true, force: true });
});

describe("real AgentServer workers", () => {
  it("register with their SDK version and LIVEKIT_AGENT_DEPLOYMENT", () => {
    const byDeployment = Object.fromEntries(d.workers().map((w) => [w.deployment, w]));
    expect(Object.keys(byDeployment).sort()).toEqual(["blue", "green", "reject"]);
    for (const w of d.workers()) {
      expect(w).toMatchObject({ version: "1.9.0", agentName: "", connected: true, status: "available" });
    }
    expect(byDeployment["reject"]?.id).toBe(ids["reject"]);
  });

  it("refuse a worker signing with the wrong secret (HTTP 401, reported)", async () => {
    const rejected = waitForEvent(d.events, "auth_rejected");
    const bad = start({ LIVEKIT_AGENT_DEPLOYMENT: "bad" }, "not-the-secret-not-the-secret-0000");
    expect((await rejected)[0].reason).toMatch(/invalid token/);
    bad.kill("SIGKILL", { group: true });
    await bad.exited;
    expect(d.workers().map((w) => w.deployment)).not.toContain("bad");
  });

  it("a rejected offer moves on; the entry runs in a job process and hangs up → completed", async () => {
    const h = d.dispatch({ metadata: call(300) });
    const placed = await h.placed;
    expect(placed.offers[0]).toMatchObject({ workerId: ids["reject"], answer: "unavailable" });
    expect([ids["blue"], ids["green"]]).toContain(placed.workerId);
    const ended = await h.ended;
    expect(ended).toMatchObject({ fate: "completed", endReason: "room_deleted" });
    const jobPid = Number(await marker(`${h.id}.started`));
    expect([reject.pid, blue.pid, green.pid]).not.toContain(jobPid);
    await marker(`${h.id}.ended`);
  });

  it("terminate(jobId) sends JobTermination and the worker shuts the job down", async () => {
    const h = d.dispatch({ metadata: call(120_000) });
    await h.placed;
    await marker(`${h.id}.started`);
    d.terminate(h.id);
    expect(await h.ended).toMatchObject({ fate: "terminated" });
    await marker(`${h.id}.ended`);
    expect(d.job(h.id)?.lateSignals).toEqual([]);
  });

  // Leaves blue and green drained (FULL): later tests start their own worker.
  it("a draining worker reports FULL, is skipped, and finishes its call; nothing is dropped", async () => {
    const held = d.dispatch({ metadata: call(2500) });
    const holder = (await held.placed).workerId!;
    const holderProc = holder === ids["blue"] ? blue : green;
    const otherId = holder === ids["blue"] ? ids["green"] : ids["blue"];
    await marker(`${held.id}.started`);

    const full = waitForEvent(d.events, "worker_status", (w) => w.id === holder && w.status === "full");
    holderProc.send({ type: "drain", timeoutMs: 60_000 });
    await full;

    const nextJob = d.dispatch({ metadata: call(200) });
    const next = await nextJob.placed;
    expect(next.workerId).toBe(otherId);
    expect(next.offers.map((o) => o.workerId)).not.toContain(holder);

    await holderProc.nextMessage("drained");
    expect(await held.ended).toMatchObject({ fate: "completed", workerId: holder });
    expect(await nextJob.ended).toMatchObject({ fate: "completed", workerId: otherId });
    expect(d.summary().byFate.dropped).toBe(0);

    const otherProc = holderProc === blue ? green : blue;
    const otherFull = waitForEvent(d.events, "worker_status", (w) => w.id === otherId && w.status === "full");
    otherProc.send({ type: "drain" });
    await otherFull;
  });

  it("reports a job no worker takes as unplaced", async () => {
    const unplaced = waitForEvent(d.events, "job_unplaced");
    const h = d.dispatch({ metadata: call(100) });
    const rec = await h.ended;
    expect(rec).toMatchObject({ fate: "unplaced", endReason: "no_worker_available" });
    expect(rec.offers.map((o) => [o.workerId, o.answer])).toEqual([[ids["reject"], "unavailable"]]);
    expect((await unplaced)[0].id).toBe(h.id);
  });

  it("a worker whose socket drops reconnects under the same id and its call still completes", async () => {
    victim = start({ LIVEKIT_AGENT_DEPLOYMENT: "victim" });
    victimId = await victim.registered;
    const h = d.dispatch({ metadata: call(5000) });
    expect((await h.placed).workerId).toBe(victimId);
    await marker(`${h.id}.started`);
    const back = waitForEvent(d.events, "worker_reconnected", (w) => w.id === victimId, 15_000);
    d.dropConnection(victimId);
    expect((await back)[0]).toMatchObject({ reconnects: 1, connected: true, runningJobs: [h.id] });
    expect(await h.ended).toMatchObject({ fate: "completed", workerId: victimId });
  });

  it("a worker killed with SIGKILL mid-call → the call is dropped", async () => {
    const h = d.dispatch({ metadata: call(120_000) });
    expect((await h.placed).workerId).toBe(victimId);
    await marker(`${h.id}.started`);
    const lost = waitForEvent(d.events, "worker_disconnected", (w) => w.id === victimId);
    victim.kill("SIGKILL", { group: true });
    expect(await victim.exited).toEqual({ code: null, signal: "SIGKILL" });
    // A killed process sends no close frame: the dispatcher first waits for a reconnect...
    expect((await lost)[1]).toEqual({ code: 1006, awaitingReconnect: true });
    // ...which the harness, knowing the process is gone, cuts short.
    d.markWorkerGone(victimId);
    expect(await h.ended).toMatchObject({ fate: "dropped", endReason: "worker_gone", workerDeployment: "victim" });
    expect(d.worker(victimId)).toMatchObject({ gone: true, connected: false });
    const s = d.summary();
    expect(s.byDeployment["victim"]).toMatchObject({ completed: 1, dropped: 1 });
    expect(s.byFate).toMatchObject({ completed: 4, dropped: 1, terminated: 1, unplaced: 1, failed: 0 });
    expect(s.inFlight).toBe(0);
  });
});
