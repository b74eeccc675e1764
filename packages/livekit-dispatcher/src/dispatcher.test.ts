import { afterEach, describe, expect, it } from "vitest";
import { RoomServiceClient } from "livekit-server-sdk";
import { WebSocket } from "ws";
import { agentToken, connectFakeWorker, JobStatus, WorkerStatus, type FakeWorker, type FakeWorkerOptions } from "../test/fake-worker.ts";
import { startDispatcher } from "./dispatcher.ts";
import type { Dispatcher, DispatcherOptions, JobRecord } from "./types.ts";
import { waitForEvent } from "./wait-for-event.ts";

const apiKey = "test-key";
const apiSecret = "test-secret-that-is-long-enough-000";

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function dispatcher(opts: Partial<DispatcherOptions> = {}): Promise<Dispatcher> {
  const d = await startDispatcher({ apiKey, apiSecret, profile: "legacy", ...opts });
  open.push(d);
  return d;
}

async function worker(d: Dispatcher, o: Partial<FakeWorkerOptions> = {}): Promise<FakeWorker> {
  const fw = await connectFakeWorker(d.url, { apiKey, apiSecret, ...o });
  open.push({ close: () => fw.kill() });
  return fw;
}

/** Upgrade attempt with raw headers; resolves with the HTTP status the server answered. */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once("open", () => {
      ws.terminate();
      reject(new Error("upgrade unexpectedly succeeded"));
    });
    ws.once("error", () => {});
  });
}

describe("startDispatcher options", () => {
  it("rejects missing credentials and bad numbers with messages naming the option", async () => {
    await expect(startDispatcher({ apiKey: "", apiSecret: "x" })).rejects.toThrow(/apiKey is required/);
    await expect(startDispatcher({ apiKey: "k", apiSecret: "" })).rejects.toThrow(/apiSecret is required/);
    await expect(startDispatcher({ apiKey: "k", apiSecret: "s", availabilityTimeoutMs: -1 })).rejects.toThrow(/availabilityTimeoutMs/);
    await expect(startDispatcher({ apiKey: "k", apiSecret: "s", profile: "legacy", unplacedRetries: 1.5 })).rejects.toThrow(/unplacedRetries/);
    await expect(startDispatcher({ apiKey: "k", apiSecret: "s", profile: "legacy", strategy: "random" as never })).rejects.toThrow(/strategy/);
  });

  it("reports a port already in use", async () => {
    const d = await dispatcher();
    await expect(startDispatcher({ apiKey, apiSecret, port: d.port })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe("worker registration and auth", () => {
  it("answers register first and records agent name, version, deployment and path prefix", async () => {
    const d = await dispatcher();
    const registered = waitForEvent(d.events, "worker_registered");
    const fw = await worker(d, { agentName: "voice", deployment: "v42", version: "1.9.0", path: "/w/blue" });
    expect(fw.received[0]?.message.case).toBe("register");
    const [view] = await registered;
    expect(view).toMatchObject({ id: fw.workerId, agentName: "voice", version: "1.9.0", deployment: "v42", pathPrefix: "/w/blue", status: "available", connected: true });
    expect(d.workers()).toHaveLength(1);
  });

  it("refuses upgrades without a valid agent token with 401 and reports them without the token", async () => {
    const d = await dispatcher();
    const wrong = await agentToken(apiKey, "another-secret-another-secret-0000");
    const noGrant = await agentToken(apiKey, apiSecret, { roomList: true });
    const reported = waitForEvent(d.events, "auth_rejected");
    expect(await upgradeStatus(`${d.url}/agent`, { authorization: `Bearer ${wrong}` })).toBe(401);
    expect((await reported)[0].reason).toMatch(/invalid token/);
    expect(await upgradeStatus(`${d.url}/agent`, {})).toBe(401);
    expect(await upgradeStatus(`${d.url}/agent`, { authorization: "Basic abc" })).toBe(401);
    expect(await upgradeStatus(`${d.url}/agent`, { authorization: `Bearer ${noGrant}` })).toBe(401);
    const reasons = d.authRejections().map((r) => r.reason);
    expect(reasons).toEqual([
      expect.stringMatching(/invalid token/),
      "missing authorization header",
      "authorization header is not 'Bearer <token>'",
      "token lacks the video.agent grant",
    ]);
    expect(JSON.stringify(d.authRejections())).not.toContain(wrong);
    expect(d.workers()).toEqual([]);
  });

  it("survives a peer that resets the connection while its upgrade is being refused", async () => {
    const d = await dispatcher();
    const { connect } = await import("node:net");
    const reported = waitForEvent(d.events, "auth_rejected");
    const sock = connect(d.port, "127.0.0.1");
    sock.on("error", () => {});
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.write("GET /agent HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer bad\r\n\r\n");
    await new Promise((r) => setTimeout(r, 20));
    sock.resetAndDestroy();
    await reported;
    await new Promise((r) => setTimeout(r, 50));
    const fw = await worker(d);
    expect(fw.workerId).toBe("AW_1");
  });

  it("answers 404 for upgrades to paths other than <prefix>/agent", async () => {
    const d = await dispatcher();
    const token = await agentToken(apiKey, apiSecret);
    expect(await upgradeStatus(`${d.url}/rtc`, { authorization: `Bearer ${token}` })).toBe(404);
  });

  it("ignores messages before register and reports them as protocol errors", async () => {
    const d = await dispatcher();
    const fw = await worker(d, { register: false });
    const err = waitForEvent(d.events, "protocol_error");
    fw.status(WorkerStatus.WS_AVAILABLE);
    expect((await err)[0].message).toMatch(/first message must be register/);
    fw.ws.send("hello");
    expect((await waitForEvent(d.events, "protocol_error"))[0].message).toMatch(/text frame/);
    fw.ws.send(Buffer.from([0xff, 0xff, 0xff]));
    expect((await waitForEvent(d.events, "protocol_error"))[0].message).toMatch(/undecodable/);
    expect(fw.received).toEqual([]);
    await fw.register();
    expect(d.workers()).toHaveLength(1);
  });

  it("answers ping with pong", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    const { WorkerMessage } = await import("@livekit/protocol");
    fw.send(new WorkerMessage({ message: { case: "ping", value: { timestamp: 123n } } }));
    expect((await fw.next("pong")).lastTimestamp).toBe(123n);
  });

  it("tracks updateWorker status and load", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    const full = waitForEvent(d.events, "worker_status", (w) => w.status === "full");
    fw.status(WorkerStatus.WS_FULL, 0.9);
    expect((await full)[0]).toMatchObject({ status: "full", load: expect.closeTo(0.9, 5) });
  });
});

describe("dispatching", () => {
  it("offers the job, assigns it on available=true, and completes it on updateJob JS_SUCCESS", async () => {
    const d = await dispatcher();
    const fw = await worker(d, { deployment: "v1" });
    const h = d.dispatch({ id: "job-1", roomName: "call-1", metadata: '{"tenant":"acme"}', agentName: "" });
    const req = await fw.next("availability");
    expect(req.job).toMatchObject({ id: "job-1", metadata: '{"tenant":"acme"}', room: { name: "call-1" } });
    const asg = await fw.next("assignment");
    expect(asg.job?.id).toBe("job-1");
    expect(asg.token).not.toBe("");
    const placed = await h.placed;
    expect(placed).toMatchObject({ state: "running", workerId: fw.workerId, workerDeployment: "v1", workerVersion: "fake-1", participantIdentity: "agent-job-1" });
    expect(d.worker(fw.workerId)?.runningJobs).toEqual(["job-1"]);
    fw.jobStatus("job-1", JobStatus.JS_RUNNING);
    fw.jobStatus("job-1", JobStatus.JS_SUCCESS);
    const ended = await h.ended;
    expect(ended).toMatchObject({ fate: "completed", endReason: "job_status", state: "ended" });
    expect(d.worker(fw.workerId)?.runningJobs).toEqual([]);
    expect(d.summary().byDeployment["v1"]?.completed).toBe(1);
  });

  it("records JS_FAILED with the worker's error text", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    const h = d.dispatch();
    await h.placed;
    fw.jobStatus(h.id, JobStatus.JS_FAILED, "entry threw");
    expect(await h.ended).toMatchObject({ fate: "failed", error: "entry threw" });
  });

  it("reports updateJob for a job the worker does not run as a protocol error", async () => {
    const d = await dispatcher();
    const a = await worker(d);
    const b = await worker(d);
    const h = d.dispatch();
    const placed = await h.placed;
    const other = placed.workerId === a.workerId ? b : a;
    const err = waitForEvent(d.events, "protocol_error");
    other.jobStatus(h.id, JobStatus.JS_SUCCESS);
    expect((await err)[0].message).toMatch(/not assigned to this worker/);
    expect(d.job(h.id)?.state).toBe("running");
  });

  it("sends an empty token when mintJobTokens is false", async () => {
    const d = await dispatcher({ mintJobTokens: false });
    const fw = await worker(d);
    d.dispatch();
    expect((await fw.next("assignment")).token).toBe("");
  });

  it("moves a job to the next worker when one answers unavailable", async () => {
    const d = await dispatcher();
    const no = await worker(d, { answer: "reject" });
    const yes = await worker(d);
    const rejected = waitForEvent(d.events, "job_rejected_by_worker");
    const h = d.dispatch();
    const placed = await h.placed;
    expect(placed.workerId).toBe(yes.workerId);
    expect((await rejected).slice(1)).toEqual([no.workerId, "unavailable"]);
    expect(placed.offers.map((o) => [o.workerId, o.answer])).toEqual([
      [no.workerId, "unavailable"],
      [yes.workerId, "accepted"],
    ]);
  });

  it("moves a job on when a worker does not answer in availabilityTimeoutMs", async () => {
    const d = await dispatcher({ availabilityTimeoutMs: 100 });
    const silent = await worker(d, { answer: "ignore" });
    const yes = await worker(d);
    const placed = await d.dispatch().placed;
    expect(placed.workerId).toBe(yes.workerId);
    expect(placed.offers[0]).toMatchObject({ workerId: silent.workerId, answer: "timeout" });
  });

  it("skips workers whose last status is WS_FULL", async () => {
    const d = await dispatcher();
    const full = await worker(d);
    const free = await worker(d);
    const status = waitForEvent(d.events, "worker_status");
    full.status(WorkerStatus.WS_FULL, 1);
    await status;
    const placed = await d.dispatch().placed;
    expect(placed.workerId).toBe(free.workerId);
    expect(placed.offers.map((o) => o.workerId)).toEqual([free.workerId]);
    expect(full.received.some((m) => m.message.case === "availability")).toBe(false);
  });

  it("offers only to workers registered with the job's agent name", async () => {
    const d = await dispatcher();
    await worker(d, { agentName: "sales" });
    const support = await worker(d, { agentName: "support" });
    expect((await d.dispatch({ agentName: "support" }).placed).workerId).toBe(support.workerId);
    expect(await d.dispatch({ agentName: "billing" }).ended).toMatchObject({ fate: "unplaced", offers: [] });
  });

  it("reports a job nobody takes as unplaced, on the event and in the summary", async () => {
    const d = await dispatcher();
    await worker(d, { answer: "reject" });
    await worker(d, { answer: "reject" });
    const unplaced = waitForEvent(d.events, "job_unplaced");
    const h = d.dispatch();
    const placed = await h.placed;
    expect(placed).toMatchObject({ fate: "unplaced", endReason: "no_worker_available", rounds: 1 });
    expect(placed.offers).toHaveLength(2);
    expect((await unplaced)[0].id).toBe(h.id);
    expect(await h.ended).toMatchObject({ fate: "unplaced" });
    expect(d.summary().byFate.unplaced).toBe(1);
  });

  it("reports unplaced at once when no worker is connected", async () => {
    const d = await dispatcher();
    expect(await d.dispatch().ended).toMatchObject({ fate: "unplaced", offers: [] });
  });

  it("retries an unplaced job a bounded number of rounds, and places it when a worker frees up", async () => {
    const d = await dispatcher({ unplacedRetries: 2, retryDelayMs: 20 });
    const fw = await worker(d, { answer: "reject" });
    const retries: number[] = [];
    d.events.on("job_retry", (_j, round) => retries.push(round));
    expect(await d.dispatch().ended).toMatchObject({ fate: "unplaced", rounds: 3 });
    expect(retries).toEqual([2, 3]);

    const h = d.dispatch();
    await waitForEvent(d.events, "job_rejected_by_worker");
    fw.answer = "accept";
    expect(await h.placed).toMatchObject({ state: "running", rounds: 2, workerId: fw.workerId });
  });

  it("spreads jobs deterministically: least-jobs fills the emptiest worker, ties by registration order", async () => {
    const d = await dispatcher();
    const a = await worker(d);
    const b = await worker(d);
    const placed: JobRecord[] = [];
    for (let i = 0; i < 4; i++) placed.push(await d.dispatch().placed);
    expect(placed.map((p) => p.workerId)).toEqual([a.workerId, b.workerId, a.workerId, b.workerId]);
  });

  it("round-robin rotates over workers regardless of their jobs", async () => {
    const d = await dispatcher({ strategy: "round-robin" });
    const a = await worker(d);
    const b = await worker(d);
    const c = await worker(d);
    const ids: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) ids.push((await d.dispatch().placed).workerId);
    expect(ids).toEqual([a.workerId, b.workerId, c.workerId, a.workerId]);
  });

  it("validates dispatch requests", async () => {
    const d = await dispatcher();
    expect(() => d.dispatch({ metadata: { a: 1 } as never })).toThrow(/metadata must be a string/);
    expect(() => d.dispatch({ id: "" })).toThrow(/id must be non-empty/);
    expect(() => d.dispatch({ roomName: "" })).toThrow(/roomName must be non-empty/);
    d.dispatch({ id: "AJ_1" });
    expect(() => d.dispatch({ id: "AJ_1" })).toThrow(/already used/);
    expect(d.dispatch().id).toBe("AJ_2");
  });

  it("survives a throwing event listener", async () => {
    const d = await dispatcher();
    d.events.on("job_assigned", () => {
      throw new Error("listener bug");
    });
    await worker(d);
    expect((await d.dispatch().placed).state).toBe("running");
  });
});

describe("job ends seen from outside", () => {
  it("completes running jobs when their room is deleted through RoomService", async () => {
    const d = await dispatcher();
    await worker(d);
    const h = d.dispatch({ roomName: "call-7" });
    await h.placed;
    await new RoomServiceClient(d.httpUrl, apiKey, apiSecret).deleteRoom("call-7");
    expect(await h.ended).toMatchObject({ fate: "completed", endReason: "room_deleted" });
  });

  it("rejects RoomService calls with bad auth, unknown rooms, bad bodies and other methods", async () => {
    const d = await dispatcher();
    await expect(new RoomServiceClient(d.httpUrl, apiKey, "wrong-secret-wrong-secret-wrong-00").deleteRoom("x")).rejects.toMatchObject({ status: 401 });
    await expect(new RoomServiceClient(d.httpUrl, apiKey, apiSecret).deleteRoom("nope")).rejects.toMatchObject({ status: 404, code: "not_found" });
    await expect(new RoomServiceClient(d.httpUrl, apiKey, apiSecret).listRooms()).rejects.toMatchObject({ status: 404, code: "bad_route" });
    const token = await agentToken(apiKey, apiSecret, { roomCreate: true });
    const post = (body: string) =>
      fetch(`${d.httpUrl}/twirp/livekit.RoomService/DeleteRoom`, { method: "POST", body, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
    expect((await post("{not json")).status).toBe(400);
    expect((await post('{"room":5}')).status).toBe(400);
    expect((await fetch(`${d.httpUrl}/`)).status).toBe(200);
    expect((await fetch(`${d.httpUrl}/elsewhere`)).status).toBe(404);
  });

  it("terminate() sends JobTermination and records the fate; refuses jobs that are not running", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    const h = d.dispatch();
    await h.placed;
    d.terminate(h.id);
    expect((await fw.next("termination")).jobId).toBe(h.id);
    expect(await h.ended).toMatchObject({ fate: "terminated", endReason: "terminated" });
    expect(() => d.terminate(h.id)).toThrow(/not running \(state ended, fate terminated\)/);
    expect(() => d.terminate("ghost")).toThrow(/no job with id "ghost"/);
  });

  it("drops running jobs at once when a worker closes its own socket", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    const h = d.dispatch();
    await h.placed;
    const gone = waitForEvent(d.events, "worker_gone");
    await fw.close();
    expect((await gone)[1]).toBe("worker_closed");
    expect(await h.ended).toMatchObject({ fate: "dropped", endReason: "worker_closed", workerId: fw.workerId });
    expect(d.summary().byFate.dropped).toBe(1);
  });

  it("drops running jobs when a lost worker does not come back within the grace period", async () => {
    const d = await dispatcher({ reconnectGraceMs: 50 });
    const fw = await worker(d);
    const h = d.dispatch();
    await h.placed;
    const disc = waitForEvent(d.events, "worker_disconnected");
    await fw.kill();
    expect((await disc)[1]).toEqual({ code: 1006, awaitingReconnect: true });
    expect(await h.ended).toMatchObject({ fate: "dropped", endReason: "worker_lost" });
  });

  it("keeps jobs of a worker that reconnects within the grace period under the same id", async () => {
    const d = await dispatcher({ reconnectGraceMs: 5000 });
    const fw = await worker(d, { deployment: "v1", path: "/w/1" });
    await worker(d, { deployment: "v1", path: "/w/2" });
    const h = d.dispatch();
    expect((await h.placed).workerId).toBe(fw.workerId);
    d.dropConnection(fw.workerId);
    await waitForEvent(d.events, "worker_disconnected");
    expect(d.worker(fw.workerId)?.connected).toBe(false);
    const back = await worker(d, { deployment: "v1", path: "/w/1" });
    expect(back.workerId).toBe(fw.workerId);
    expect(d.worker(fw.workerId)).toMatchObject({ connected: true, reconnects: 1, runningJobs: [h.id] });
    back.jobStatus(h.id, JobStatus.JS_SUCCESS);
    expect(await h.ended).toMatchObject({ fate: "completed", workerId: fw.workerId });
  });

  it("markWorkerGone drops the worker's running jobs now and notes later signals", async () => {
    const d = await dispatcher({ reconnectGraceMs: 60_000 });
    const fw = await worker(d);
    const h = d.dispatch({ roomName: "r1" });
    await h.placed;
    await fw.kill();
    d.markWorkerGone(fw.workerId);
    expect(await h.ended).toMatchObject({ fate: "dropped", endReason: "worker_gone" });
    expect(d.worker(fw.workerId)?.gone).toBe(true);
    await new RoomServiceClient(d.httpUrl, apiKey, apiSecret).deleteRoom("r1");
    expect(d.job(h.id)).toMatchObject({ fate: "dropped", lateSignals: ["completed:room_deleted"] });
    expect(() => d.markWorkerGone("AW_99")).toThrow(/no worker with id "AW_99" \(known: AW_1\)/);
    expect(() => d.dropConnection(fw.workerId)).toThrow(/not connected/);
  });

  it("close() reports jobs still being offered as unplaced and refuses new dispatches", async () => {
    const d = await startDispatcher({ apiKey, apiSecret, profile: "legacy", availabilityTimeoutMs: 60_000 });
    const fw = await worker(d, { answer: "ignore" });
    const h = d.dispatch();
    await fw.next("availability");
    await d.close();
    expect(await h.ended).toMatchObject({ fate: "unplaced", endReason: "dispatcher_closed" });
    expect(() => d.dispatch()).toThrow(/closed/);
    await d.close();
  });

  it("waitForWorkers times out naming the workers it saw", async () => {
    const d = await dispatcher();
    const fw = await worker(d);
    fw.status(WorkerStatus.WS_FULL);
    await waitForEvent(d.events, "worker_status");
    await expect(d.waitForWorkers(1, { timeoutMs: 50 })).rejects.toThrow(/AW_1\(full\)/);
    expect(await d.waitForWorkers(1, { filter: (w) => w.status === "full" })).toHaveLength(1);
  });
});
