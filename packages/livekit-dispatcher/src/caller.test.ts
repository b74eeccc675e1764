// The caller decides a call's fate: completed only when the agent's job still ran at hang-up.
import { RoomServiceClient } from "livekit-server-sdk";
import { afterEach, describe, expect, it } from "vitest";
import { connectFakeWorker, JobStatus, type FakeWorker } from "../test/fake-worker.ts";
import { judge } from "./call-fate.ts";
import { startDispatcher } from "./dispatcher.ts";
import type { AgentPresence, Dispatcher, DispatcherOptions } from "./types.ts";
import { waitForEvent } from "./wait-for-event.ts";

const apiKey = "caller-key";
const apiSecret = "caller-secret-that-is-long-enough-0";
const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function setup(opts: Partial<DispatcherOptions> = {}): Promise<{ d: Dispatcher; fw: FakeWorker }> {
  const d = await startDispatcher({ apiKey, apiSecret, profile: "livekit", seed: 3, ...opts });
  open.push(d);
  const fw = await connectFakeWorker(d.url, { apiKey, apiSecret });
  open.push({ close: () => fw.kill() });
  return { d, fw };
}

const LONG = 60_000;

describe("hang-up", () => {
  it("at hangUpAfterMs with the job running: completed, then the room closes (JobTermination, JS_SUCCESS)", async () => {
    const { d, fw } = await setup();
    const hung = waitForEvent(d.events, "caller_hung_up");
    const h = d.dispatch({ hangUpAfterMs: 0 });
    expect((await fw.next("termination")).jobId).toBe(h.id);
    const ended = await h.ended;
    expect(ended).toMatchObject({ fate: "completed", endReason: "caller_hung_up", serverStatus: "JS_SUCCESS", hasCaller: true, hangUpAfterMs: 0 });
    expect(ended.hungUpAt).toBeDefined();
    expect((await hung)[0].fate).toBe("completed");
    // The worker reporting the job's end afterwards changes nothing.
    fw.jobStatus(h.id, JobStatus.JS_SUCCESS);
    // A ping after it on the same socket: its pong means the update was handled.
    const { WorkerMessage } = await import("@livekit/protocol");
    const pong = fw.next("pong");
    fw.send(new WorkerMessage({ message: { case: "ping", value: { timestamp: 1n } } }));
    await pong;
    expect(d.job(h.id)?.lateSignals).toEqual(["cut_short:job_status"]);
  });

  it("hangUp(jobId) hangs up now; refuses jobs without a caller, not running, or unknown", async () => {
    const { d } = await setup();
    const h = d.dispatch({ caller: true });
    await h.placed;
    d.hangUp(h.id);
    expect(await h.ended).toMatchObject({ fate: "completed" });
    expect(() => d.hangUp(h.id)).toThrow(/not running/);
    const nobody = d.dispatch();
    await nobody.placed;
    expect(() => d.hangUp(nobody.id)).toThrow(/has no caller/);
    expect(() => d.hangUp("ghost")).toThrow(/no job with id/);
  });

  it("validates hangUpAfterMs and caller", async () => {
    const { d } = await setup();
    expect(() => d.dispatch({ hangUpAfterMs: -1 })).toThrow(/hangUpAfterMs must be/);
    expect(() => d.dispatch({ hangUpAfterMs: Number.NaN })).toThrow(/hangUpAfterMs must be/);
    expect(() => d.dispatch({ caller: "yes" as never })).toThrow(/caller must be a boolean/);
    expect(() => d.dispatch({ caller: false, hangUpAfterMs: 5 })).toThrow(/needs a caller/);
    expect(() => d.dispatch({ deployment: 5 as never })).toThrow(/deployment must be a string/);
  });
});

describe("a caller who talks from the agent's answer (talkMs)", () => {
  it("hangs up talkMs after the presence probe first sees the agent in the room: completed", async () => {
    const presence = new Map<string, AgentPresence>();
    const { d, fw } = await setup({ agentPresence: (id) => presence.get(id) ?? "not_joined", presencePollMs: 20 });
    const h = d.dispatch({ talkMs: 50 });
    await h.placed;
    // Not joined yet: no hang-up however long the caller waits (short of joinTimeoutMs).
    await new Promise((r) => setTimeout(r, 120));
    expect(d.job(h.id)?.state).toBe("running");
    presence.set(h.id, "in_room");
    expect((await fw.next("termination")).jobId).toBe(h.id);
    const ended = await h.ended;
    expect(ended).toMatchObject({ fate: "completed", endReason: "caller_hung_up", talkMs: 50 });
    expect(ended.agentJoinedAt).toBeGreaterThanOrEqual(ended.assignedAt!);
    expect(ended.hungUpAt).toBeGreaterThanOrEqual(ended.agentJoinedAt!);
  });

  it("gives up after joinTimeoutMs when the agent never joins: cut short, agent_never_joined", async () => {
    const { d } = await setup({ agentPresence: () => "not_joined", presencePollMs: 20 });
    const h = d.dispatch({ talkMs: 10_000, joinTimeoutMs: 60 });
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "agent_never_joined" });
  });

  it("an agent that joins after its caller gave up finds the room closed: JobTermination again (agents-js 1.9 drops one sent while the job process starts)", async () => {
    const presence = new Map<string, AgentPresence>();
    const { d, fw } = await setup({ agentPresence: (id) => presence.get(id) ?? "not_joined", presencePollMs: 20 });
    const h = d.dispatch({ talkMs: 10_000, joinTimeoutMs: 40 });
    expect((await fw.next("termination")).jobId).toBe(h.id);
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "agent_never_joined" });
    presence.set(h.id, "in_room");
    expect((await fw.next("termination")).jobId).toBe(h.id);
    expect(d.job(h.id)?.lateSignals).toContain("agent_in_closed_room");
    // Once the agent is gone, nothing more is sent.
    presence.set(h.id, "left");
    await expect(fw.next("termination", () => true, 2500)).rejects.toThrow(/no termination/);
  });

  it("validates talkMs and joinTimeoutMs", async () => {
    const { d } = await setup({ agentPresence: () => "in_room" });
    expect(() => d.dispatch({ talkMs: -1 })).toThrow(/talkMs must be/);
    expect(() => d.dispatch({ talkMs: 1, joinTimeoutMs: Number.POSITIVE_INFINITY })).toThrow(/joinTimeoutMs must be/);
    expect(() => d.dispatch({ talkMs: 1, hangUpAfterMs: 1 })).toThrow(/either talkMs .* or hangUpAfterMs/);
    expect(() => d.dispatch({ talkMs: 1, caller: false })).toThrow(/talkMs needs a caller/);
    expect(() => d.dispatch({ joinTimeoutMs: 5 })).toThrow(/joinTimeoutMs only applies with talkMs/);
    const { d: blind } = await setup();
    expect(() => blind.dispatch({ talkMs: 1 })).toThrow(/talkMs needs agentPresence/);
  });
});

describe("cut short: the job ended before its caller hung up, whatever the worker said", () => {
  it("JS_SUCCESS before the hang-up → job_succeeded_early", async () => {
    const { d, fw } = await setup();
    const h = d.dispatch({ hangUpAfterMs: LONG });
    await h.placed;
    fw.jobStatus(h.id, JobStatus.JS_SUCCESS);
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "job_succeeded_early", serverStatus: "JS_SUCCESS" });
  });

  it("JS_FAILED → job_failed, with the worker's error", async () => {
    const { d, fw } = await setup();
    const h = d.dispatch({ hangUpAfterMs: LONG });
    await h.placed;
    fw.jobStatus(h.id, JobStatus.JS_RUNNING);
    fw.jobStatus(h.id, JobStatus.JS_FAILED, "entry threw");
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "job_failed", error: "entry threw", serverStatus: "JS_FAILED" });
  });

  it("the worker closing its socket → worker_gone; markWorkerGone → worker_gone", async () => {
    const { d, fw } = await setup();
    const h = d.dispatch({ hangUpAfterMs: LONG });
    await h.placed;
    await fw.close();
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "worker_gone", endReason: "worker_closed" });
    const fw2 = await connectFakeWorker(d.url, { apiKey, apiSecret });
    open.push({ close: () => fw2.kill() });
    const h2 = d.dispatch({ hangUpAfterMs: LONG });
    await h2.placed;
    d.markWorkerGone(fw2.workerId);
    expect(await h2.ended).toMatchObject({ fate: "cut_short", cause: "worker_gone", endReason: "worker_gone" });
  });

  it("the room deleted (e.g. the agent hanging up itself) → room_deleted; without a caller it stays completed", async () => {
    const { d } = await setup();
    const h = d.dispatch({ roomName: "r-called", hangUpAfterMs: LONG });
    await h.placed;
    await new RoomServiceClient(d.httpUrl, apiKey, apiSecret).deleteRoom("r-called");
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "room_deleted" });
    const legacy = d.dispatch({ roomName: "r-legacy" });
    await legacy.placed;
    d.deleteRoom("r-legacy");
    expect(await legacy.ended).toMatchObject({ fate: "completed", endReason: "room_deleted" });
  });

  it("terminate() stays terminated, and the summary counts fates and causes", async () => {
    const { d, fw } = await setup();
    const t = d.dispatch({ hangUpAfterMs: LONG });
    await t.placed;
    d.terminate(t.id);
    expect(await t.ended).toMatchObject({ fate: "terminated" });
    const s = d.dispatch({ hangUpAfterMs: LONG });
    await s.placed;
    fw.jobStatus(s.id, JobStatus.JS_SUCCESS);
    await s.ended;
    const c = d.dispatch({ hangUpAfterMs: 0 });
    await c.ended;
    expect(d.summary()).toMatchObject({
      total: 3,
      inFlight: 0,
      byFate: { completed: 1, cut_short: 1, terminated: 1, failed: 0, dropped: 0 },
      cutShortByCause: { job_succeeded_early: 1, worker_gone: 0 },
    });
  });
});

describe("agent presence probe (the room's participant list, without media)", () => {
  it("an agent seen gone on two polls → cut short, job_process_killed, and the room closes", async () => {
    const presence = new Map<string, AgentPresence>();
    const { d, fw } = await setup({ agentPresence: (id) => presence.get(id), presencePollMs: 5 });
    const h = d.dispatch({ hangUpAfterMs: LONG });
    await h.placed;
    presence.set(h.id, "in_room");
    presence.set(h.id, "left");
    expect((await fw.next("termination")).jobId).toBe(h.id);
    expect(await h.ended).toMatchObject({ fate: "cut_short", cause: "job_process_killed", serverStatus: "JS_FAILED", error: "agent worker left the room" });
  });

  it("at hang-up: not joined → agent_never_joined; left → job_process_killed; a throwing probe counts as unknown", async () => {
    let answer: AgentPresence | "throw" = "not_joined";
    const probe = (): AgentPresence => {
      if (answer === "throw") throw new Error("probe bug");
      return answer;
    };
    const { d } = await setup({ agentPresence: probe, presencePollMs: 60_000 });
    const a = d.dispatch({ caller: true });
    await a.placed;
    d.hangUp(a.id);
    expect(await a.ended).toMatchObject({ fate: "cut_short", cause: "agent_never_joined", endReason: "caller_hung_up" });
    answer = "left";
    const b = d.dispatch({ caller: true });
    await b.placed;
    d.hangUp(b.id);
    expect(await b.ended).toMatchObject({ fate: "cut_short", cause: "job_process_killed" });
    answer = "throw";
    const c = d.dispatch({ caller: true });
    await c.placed;
    d.hangUp(c.id);
    expect(await c.ended).toMatchObject({ fate: "completed" });
  });
});

describe("judge (src/call-fate.ts)", () => {
  it("maps every signal for calls with and without a caller", () => {
    expect(judge({ kind: "worker_lost" }, false)).toEqual({ fate: "dropped", endReason: "worker_lost" });
    expect(judge({ kind: "job_status", status: "failed" }, false)).toEqual({ fate: "failed", endReason: "job_status" });
    expect(judge({ kind: "agent_left_room", how: "probe" }, false)).toEqual({ fate: "failed", endReason: "agent_left_room" });
    expect(judge({ kind: "caller_hung_up" }, false).fate).toBe("completed");
    expect(judge({ kind: "terminated" }, true)).toEqual({ fate: "terminated", endReason: "terminated" });
  });
});
