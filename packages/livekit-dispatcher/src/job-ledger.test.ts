import { describe, expect, it } from "vitest";
import { JobLedger } from "./job-ledger.ts";
import type { JobRecord } from "./types.ts";

function record(id: string, extra: Partial<JobRecord> = {}): JobRecord {
  return {
    id,
    roomName: `room-${id}`,
    roomSid: `RM_${id}`,
    agentName: "",
    deployment: "",
    namespace: "",
    serverStatus: "JS_RUNNING",
    hasCaller: false,
    metadata: "",
    state: "running",
    createdAt: 1,
    rounds: 1,
    offers: [],
    lateSignals: [],
    ...extra,
  };
}

describe("JobLedger", () => {
  it("rejects a duplicate job id with a message saying what to do", () => {
    const l = new JobLedger();
    l.add(record("a"));
    expect(() => l.add(record("a"))).toThrow(/already used; pass a unique id/);
  });

  it("keeps the first fate and records later signals", () => {
    const l = new JobLedger();
    l.add(record("a"));
    expect(l.finish("a", "dropped", "worker_gone", 5)).toBe(true);
    expect(l.finish("a", "completed", "room_deleted", 6)).toBe(false);
    const j = l.get("a")!;
    expect(j.fate).toBe("dropped");
    expect(j.endedAt).toBe(5);
    expect(j.lateSignals).toEqual(["completed:room_deleted"]);
    expect(l.finish("nope", "completed", "x", 1)).toBe(false);
  });

  it("summarises by fate, deployment and worker, counting unfinished jobs as in flight", () => {
    const l = new JobLedger();
    l.add(record("a", { workerId: "w1", workerDeployment: "v1" }));
    l.add(record("b", { workerId: "w2", workerDeployment: "v2" }));
    l.add(record("c", { workerId: "w2", workerDeployment: "v2" }));
    l.add(record("d", { state: "pending" }));
    l.add(record("e"));
    l.finish("a", "completed", "room_deleted", 2);
    l.finish("b", "dropped", "worker_lost", 2);
    l.finish("d", "unplaced", "no_worker_available", 2);
    const s = l.summary();
    expect(s.total).toBe(5);
    expect(s.inFlight).toBe(2);
    expect(s.byFate).toEqual({ completed: 1, cut_short: 0, failed: 0, dropped: 1, unplaced: 1, abandoned: 0, terminated: 0 });
    expect(s.notRunByReason).toEqual({ no_worker_available: 1 });
    expect(s.byDeployment["v1"]?.completed).toBe(1);
    expect(s.byDeployment["v2"]?.dropped).toBe(1);
    expect(s.byWorker["w2"]?.dropped).toBe(1);
    expect(Object.keys(s.byWorker)).toEqual(["w1", "w2"]);
  });
});
