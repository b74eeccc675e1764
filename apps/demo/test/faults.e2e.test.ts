// Faults around a drain, with real processes and real signals: a job process SIGKILLed mid-call,
// and SIGTERM arriving while a job assignment is in flight.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { WorkerProcess } from "../src/fleet.ts";
import { call, hangUpOnceRunning, snapshotUntil, startRig, until, type Rig } from "./rig.ts";

// Two independent rigs (one dispatcher and one worker each), booted together to save time.
let killRig: Rig;
let killWorker: WorkerProcess;
let termRig: Rig;
let termWorker: WorkerProcess;

beforeAll(async () => {
  // A worker given a manifest source is a member only of a valid manifest that names its version.
  [killRig, termRig] = await Promise.all([startRig({ activeVersions: ["v1.0.0"] }), startRig({ activeVersions: ["v1.0.0"] })]);
  killWorker = killRig.fleet.spawn({ name: "kill-v1", version: "v1.0.0" });
  termWorker = termRig.fleet.spawn({ name: "term-v1", version: "v1.0.0" });
  await Promise.all([killWorker.ready, termWorker.ready]);
  await Promise.all([snapshotUntil(killWorker, "serving", (s) => s.state === "serving"), snapshotUntil(termWorker, "serving", (s) => s.state === "serving")]);
});

afterAll(async () => {
  await Promise.all([killRig?.close(), termRig?.close()]);
});

describe("a job process killed mid-call", () => {
  test("counts as a failed session, the caller's call is cut short, active_sessions returns to 0, and a drain still completes with exit 0", async () => {
    const handle = call(killRig);
    const placed = await handle.placed;
    const pid = await until("the job's entry to start", () => killRig.jobPid(placed.id));
    await snapshotUntil(killWorker, "the call to be live", (s) => s.active_sessions === 1);
    process.kill(pid, "SIGKILL");
    const snap = await snapshotUntil(killWorker, "the killed call to end", (s) => s.active_sessions === 0);
    expect(snap).toMatchObject({ active_sessions: 0, total_sessions_started: 1, total_session_failures: 1, draining: false });
    expect(killRig.ended(placed.id)).toBe(false);

    killWorker.signal("SIGTERM");
    expect(await killWorker.exited).toEqual({ code: 0, signal: null });
    // The caller lost the call before hanging up: cut short, whatever the worker says. (@livekit/agents
    // 1.9 does not report a crashed job process to LiveKit; the OpenRTC binding does, with
    // UpdateJobStatus JS_FAILED, which may land before or after the room notices the agent left.)
    const job = await handle.ended;
    expect(job.fate).toBe("cut_short");
    expect(["job_failed", "job_process_killed"]).toContain(job.cause);
    expect(job.workerId).toBe(killWorker.info!.workerId);
    const events = killRig.recordsOf(killWorker).map((r) => r.event);
    expect(events).toEqual(expect.arrayContaining(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]));
    expect(killRig.recordsOf(killWorker).find((r) => r.event === "worker.exited")).toMatchObject({ result: "ok", dropped_sessions: 0 });
  });
});

describe("SIGTERM while a job assignment is in flight", () => {
  test("the accepted call runs to completion on that worker, then the worker exits 0", async () => {
    const workerId = termWorker.info!.workerId;
    termRig.dispatcher.events.on("job_assigned", (job) => {
      if (job.workerId === workerId) termWorker.signal("SIGTERM");
    });
    const handle = call(termRig);
    const job = await hangUpOnceRunning(termRig, handle);
    expect(job).toMatchObject({ fate: "completed", endReason: "caller_hung_up", workerId });
    expect(termWorker.terminatedAt).toBeDefined();
    expect(termRig.jobPid(job.id)).toBeDefined();
    await until("the job process's shutdown marker", () => termRig.ended(job.id));
    expect(await termWorker.exited).toEqual({ code: 0, signal: null });
    const records = termRig.recordsOf(termWorker);
    const drain = records.find((r) => r.event === "deployment.drain_started");
    // The drain began with the call already counted (accepted before the signal), never rejected.
    expect(drain).toMatchObject({ actor: "signal:SIGTERM", active_sessions: 1 });
    expect(records.some((r) => r.event === "worker.rejected")).toBe(false);
    expect(records.find((r) => r.event === "worker.exited")).toMatchObject({ result: "ok", dropped_sessions: 0, total_sessions_started: 1 });
  });
});
