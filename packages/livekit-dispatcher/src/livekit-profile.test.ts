// profile "livekit" with fake protocol workers: the rules a real AgentServer cannot be made to
// trigger on demand (load >= 1, terminate, silent workers). Each test names the upstream code.
import { afterEach, describe, expect, it } from "vitest";
import { connectFakeWorker, JobStatus, WorkerStatus, type FakeWorker, type FakeWorkerOptions } from "../test/fake-worker.ts";
import { startDispatcher } from "./dispatcher.ts";
import type { Dispatcher, DispatcherOptions } from "./types.ts";
import { waitForEvent } from "./wait-for-event.ts";

const apiKey = "lk-key";
const apiSecret = "lk-secret-that-is-long-enough-00000";
const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function dispatcher(opts: Partial<DispatcherOptions> = {}): Promise<Dispatcher> {
  const d = await startDispatcher({ apiKey, apiSecret, profile: "livekit", seed: 1, ...opts });
  open.push(d);
  return d;
}

async function worker(d: Dispatcher, o: Partial<FakeWorkerOptions> = {}): Promise<FakeWorker> {
  const fw = await connectFakeWorker(d.url, { apiKey, apiSecret, ...o });
  open.push({ close: () => fw.kill() });
  return fw;
}

/** Reports status/load and waits until the dispatcher has it. */
async function report(d: Dispatcher, fw: FakeWorker, status: WorkerStatus, load: number): Promise<void> {
  const seen = waitForEvent(d.events, "worker_status", (w) => w.id === fw.workerId);
  fw.status(status, load);
  await seen;
}

describe("options", () => {
  it("refuse bad profile, selection, strategy/selection conflicts, random and unplacedRetries with livekit", async () => {
    const base = { apiKey, apiSecret };
    await expect(startDispatcher({ ...base, profile: "cloud" as never })).rejects.toThrow(/profile must be/);
    await expect(startDispatcher({ ...base, selection: "fastest" as never })).rejects.toThrow(/selection must be one of/);
    await expect(startDispatcher({ ...base, strategy: "round-robin", selection: "least-jobs" })).rejects.toThrow(/disagree/);
    await expect(startDispatcher({ ...base, random: 0.5 as never })).rejects.toThrow(/random must be a function/);
    await expect(startDispatcher({ ...base, seed: 0.5 })).rejects.toThrow(/safe integer/);
    await expect(startDispatcher({ ...base, profile: "livekit", unplacedRetries: 2 })).rejects.toThrow(/agentservice.go JobRequest/);
    await expect(startDispatcher({ ...base, agentPresence: "x" as never })).rejects.toThrow(/agentPresence must be a function/);
    await expect(startDispatcher({ ...base, registerTimeoutMs: -1 })).rejects.toThrow(/registerTimeoutMs/);
  });
});

describe("registration (pkg/agent/worker.go HandleRegister, pkg/service/agentservice.go HandshakeAgentWorker)", () => {
  it("records deployment, agent name, namespace, job type and version", async () => {
    const d = await dispatcher();
    const fw = await worker(d, { agentName: "voice", namespace: "ns", deployment: "blue", version: "1.9.0" });
    expect(d.worker(fw.workerId)).toMatchObject({ agentName: "voice", namespace: "ns", jobType: "JT_ROOM", deployment: "blue", version: "1.9.0" });
  });

  it("an invalid deployment fails the registration: no response, the connection is closed, the rejection recorded", async () => {
    const d = await dispatcher();
    const rejected = waitForEvent(d.events, "registration_rejected");
    const fw = await worker(d, { deployment: "bad_name", register: false });
    const reply = fw.register();
    reply.catch(() => {});
    expect((await rejected)[0]).toMatchObject({ reason: "deployment contains reserved character '_'", deployment: "bad_name" });
    expect(await fw.closed).toBe(1006); // closed without a close frame, like gorilla's Conn.Close
    expect(fw.received).toEqual([]);
    expect(d.workers()).toEqual([]);
    expect(d.registrationRejections().map((r) => r.reason)).toEqual(["deployment contains reserved character '_'"]);
  });

  it("an unknown job type fails the registration", async () => {
    const d = await dispatcher();
    const rejected = waitForEvent(d.events, "registration_rejected");
    const fw = await worker(d, { jobType: 42, register: false });
    fw.register().catch(() => {});
    expect((await rejected)[0].reason).toBe("unknown job type");
    await fw.closed;
  });

  it("a signal other than register or ping during the handshake closes the connection; ping is answered", async () => {
    const d = await dispatcher();
    const fw = await worker(d, { register: false });
    const { WorkerMessage } = await import("@livekit/protocol");
    fw.send(new WorkerMessage({ message: { case: "ping", value: { timestamp: 5n } } }));
    expect((await fw.next("pong")).lastTimestamp).toBe(5n);
    const err = waitForEvent(d.events, "protocol_error");
    fw.status(WorkerStatus.WS_AVAILABLE);
    expect((await err)[0].message).toMatch(/first message must be register/);
    expect(await fw.closed).toBe(1006);
  });

  it("a connection that does not register within registerTimeoutMs is closed (worker.go RegisterTimeout)", async () => {
    const d = await dispatcher({ registerTimeoutMs: 20 });
    const fw = await worker(d, { register: false });
    await fw.closed;
    expect(d.workers()).toEqual([]);
  });
});

describe("routing by worker key (pkg/service/agentservice.go JobRequest, workerKey)", () => {
  it("an ordinary dispatch (deployment \"\") never reaches a worker of another deployment, and vice versa", async () => {
    const d = await dispatcher();
    const blue = await worker(d, { deployment: "blue" });
    expect(await d.dispatch().ended).toMatchObject({ fate: "unplaced", endReason: "no workers available", offers: [] });
    const plain = await worker(d);
    expect((await d.dispatch().placed).workerId).toBe(plain.workerId);
    expect((await d.dispatch({ deployment: "blue" }).placed).workerId).toBe(blue.workerId);
    expect(await d.dispatch({ deployment: "green" }).ended).toMatchObject({ fate: "unplaced", endReason: "no workers available" });
  });

  it("agent name and namespace are part of the key; jobs carry deployment and namespace", async () => {
    const d = await dispatcher();
    const fw = await worker(d, { agentName: "a", namespace: "n1", deployment: "x" });
    expect(await d.dispatch({ agentName: "a", deployment: "x" }).ended).toMatchObject({ fate: "unplaced" });
    d.dispatch({ agentName: "a", namespace: "n1", deployment: "x" });
    expect((await fw.next("availability")).job).toMatchObject({ agentName: "a", namespace: "n1", deployment: "x" });
  });

  it("the legacy profile ignores deployment unless routeByDeployment is set", async () => {
    const d = await dispatcher({ profile: "legacy" });
    const fw = await worker(d, { deployment: "v1.0.0" });
    expect((await d.dispatch().placed).workerId).toBe(fw.workerId);
    const strict = await dispatcher({ profile: "legacy", routeByDeployment: true });
    await worker(strict, { deployment: "v1.0.0" });
    expect(await strict.dispatch().ended).toMatchObject({ fate: "unplaced" });
  });
});

describe("selection (pkg/service/agentservice.go selectWorkerWeightedByLoad)", () => {
  it("spreads jobs weighted by 1 - load, reproducibly for a seed", async () => {
    const run = async () => {
      const d = await dispatcher({ seed: 42 });
      const idle = await worker(d);
      const busy = await worker(d);
      await report(d, busy, WorkerStatus.WS_AVAILABLE, 0.8);
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push((await d.dispatch().placed).workerId === idle.workerId ? "idle" : "busy");
      return ids;
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect(first.filter((x) => x === "idle").length).toBeGreaterThan(first.filter((x) => x === "busy").length);
  });

  it("a worker reporting load >= 1 is never offered a job; none left → unplaced \"no workers with sufficient capacity\"", async () => {
    const d = await dispatcher();
    const loaded = await worker(d);
    const full = await worker(d);
    await report(d, loaded, WorkerStatus.WS_AVAILABLE, 1);
    await report(d, full, WorkerStatus.WS_FULL, 0.2);
    expect(await d.dispatch().ended).toMatchObject({ fate: "unplaced", endReason: "no workers with sufficient capacity", offers: [] });
    expect(loaded.received.some((m) => m.message.case === "availability")).toBe(false);
    expect(d.summary().notRunByReason).toEqual({ "no workers with sufficient capacity": 1 });
  });
});

describe("retries (pkg/service/agentservice.go JobRequest, pkg/agent/worker.go AssignJob)", () => {
  it("\"not available\" moves on to another worker", async () => {
    const d = await dispatcher({ random: () => 0 }); // always the first eligible worker
    const no = await worker(d, { answer: "reject" });
    const yes = await worker(d);
    const placed = await d.dispatch().placed;
    expect(placed.offers.map((o) => [o.workerId, o.answer])).toEqual([
      [no.workerId, "unavailable"],
      [yes.workerId, "accepted"],
    ]);
  });

  it("\"worker closed\" during the offer moves on to another worker", async () => {
    const d = await dispatcher({ random: () => 0 });
    const dying = await worker(d, { answer: "ignore" });
    const yes = await worker(d);
    const h = d.dispatch();
    await dying.next("availability");
    await dying.kill();
    expect((await h.placed).offers.map((o) => [o.workerId, o.answer])).toEqual([
      [dying.workerId, "disconnected"],
      [yes.workerId, "accepted"],
    ]);
  });

  it("an availability timeout is not retried: the job is abandoned", async () => {
    const d = await dispatcher({ random: () => 0, availabilityTimeoutMs: 30 });
    const silent = await worker(d, { answer: "ignore" });
    const yes = await worker(d);
    const abandoned = waitForEvent(d.events, "job_abandoned");
    const h = d.dispatch();
    expect(await h.ended).toMatchObject({ fate: "abandoned", endReason: "availability_timeout", offers: [{ workerId: silent.workerId, answer: "timeout" }] });
    expect((await abandoned)[0].id).toBe(h.id);
    expect(yes.received.some((m) => m.message.case === "availability")).toBe(false);
  });

  it("when every worker was tried the job is abandoned (placed resolves too), and counted", async () => {
    const d = await dispatcher();
    await worker(d, { answer: "reject" });
    await worker(d, { answer: "reject" });
    const h = d.dispatch();
    expect(await h.placed).toMatchObject({ fate: "abandoned", endReason: "all_workers_tried" });
    expect((await h.ended).offers).toHaveLength(2);
    expect(d.summary()).toMatchObject({ byFate: { abandoned: 1, unplaced: 0 }, notRunByReason: { all_workers_tried: 1 } });
  });

  it("AvailabilityResponse.terminate ends the job (JS_SUCCESS, no assignment) without trying another worker", async () => {
    const d = await dispatcher({ random: () => 0 });
    const t = await worker(d, { answer: "terminate" });
    const other = await worker(d);
    const ended = await d.dispatch().ended;
    expect(ended).toMatchObject({ fate: "abandoned", endReason: "worker_terminated_job", serverStatus: "JS_SUCCESS", offers: [{ workerId: t.workerId, answer: "terminated" }] });
    expect(t.received.some((m) => m.message.case === "assignment")).toBe(false);
    expect(other.received.some((m) => m.message.case === "availability")).toBe(false);
  });
});

describe("reconnects (pkg/service/agentservice.go HandleConnection, deregisterWorker)", () => {
  it("a worker that re-registers gets a new id; the server forgets the old connection's jobs, the room keeps them", async () => {
    const d = await dispatcher({ reconnectGraceMs: 5000 });
    const fw = await worker(d, { path: "/w/1", deployment: "v1" });
    const h = d.dispatch({ deployment: "v1", hangUpAfterMs: 60_000 });
    await h.placed;
    d.dropConnection(fw.workerId);
    await waitForEvent(d.events, "worker_disconnected");
    const gone = waitForEvent(d.events, "worker_gone", (w) => w.id === fw.workerId);
    const back = await worker(d, { path: "/w/1", deployment: "v1" });
    expect(back.workerId).not.toBe(fw.workerId);
    expect((await gone)[1]).toBe("reregistered");
    expect(d.worker(back.workerId)).toMatchObject({ reconnectOf: fw.workerId, reconnects: 1, runningJobs: [h.id] });
    expect(d.job(h.id)).toMatchObject({ state: "running", workerId: fw.workerId, hostWorkerId: back.workerId, serverForgot: true });
    // JobTerminate finds no worker for a forgotten job...
    expect(() => d.terminate(h.id)).toThrow(/no worker for job .* forgot/);
    // ...but the caller's hang-up still closes the room, through the connection hosting the job.
    d.hangUp(h.id);
    expect((await back.next("termination")).jobId).toBe(h.id);
    expect(await h.ended).toMatchObject({ fate: "completed", endReason: "caller_hung_up" });
  });

  it("a hang-up while the worker's socket is down: completed, and the room's closing reaches the job once the worker registers again", async () => {
    const d = await dispatcher({ reconnectGraceMs: 5000 });
    const fw = await worker(d, { path: "/w/3" });
    const h = d.dispatch({ caller: true });
    await h.placed;
    d.dropConnection(fw.workerId);
    await waitForEvent(d.events, "worker_disconnected");
    d.hangUp(h.id);
    expect(await h.ended).toMatchObject({ fate: "completed", endReason: "caller_hung_up" });
    const back = await worker(d, { path: "/w/3" });
    // Sent right after the register response: it may already be in.
    const seen = () => back.received.find((m) => m.message.case === "termination");
    const termination = seen() ?? (await back.next("termination").then(() => seen()));
    expect(termination?.message.value).toMatchObject({ jobId: h.id });
  });

  it("an UpdateJobStatus for a forgotten job through the new connection still ends the call (cut short)", async () => {
    const d = await dispatcher({ reconnectGraceMs: 5000 });
    const fw = await worker(d, { path: "/w/2" });
    const h = d.dispatch({ hangUpAfterMs: 60_000 });
    await h.placed;
    d.dropConnection(fw.workerId);
    await waitForEvent(d.events, "worker_disconnected");
    const back = await worker(d, { path: "/w/2" });
    back.jobStatus(h.id, JobStatus.JS_FAILED, "process exited");
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "job_failed", error: "process exited", serverStatus: "JS_RUNNING" });
  });

  it("a lost worker that does not come back: its calls are cut short (worker_gone)", async () => {
    const d = await dispatcher({ reconnectGraceMs: 20 });
    const fw = await worker(d);
    const h = d.dispatch({ hangUpAfterMs: 60_000 });
    await h.placed;
    await fw.kill();
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "worker_gone", endReason: "worker_lost" });
  });
});

describe("agent left the room (pkg/rtc/room.go → pkg/agent/worker.go TerminateJob AGENT_LEFT_ROOM)", () => {
  it("ends the job JS_FAILED \"agent worker left the room\" with a JobTermination; a called job is cut short", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    const called = d.dispatch({ hangUpAfterMs: 60_000 });
    await called.placed;
    d.agentLeftRoom(called.id);
    expect((await fw.next("termination")).jobId).toBe(called.id);
    expect(await called.ended).toMatchObject({ fate: "cut_short", cause: "job_process_killed", serverStatus: "JS_FAILED", error: "agent worker left the room" });
    const legacy = d.dispatch();
    await legacy.placed;
    d.agentLeftRoom(legacy.id);
    expect(await legacy.ended).toMatchObject({ fate: "failed", endReason: "agent_left_room" });
    expect(() => d.agentLeftRoom(legacy.id)).toThrow(/not running/);
    expect(() => d.agentLeftRoom("ghost")).toThrow(/no job with id "ghost"/);
  });
});
