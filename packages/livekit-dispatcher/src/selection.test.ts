import { describe, expect, it } from "vitest";
import { seededRandom } from "./random.ts";
import { NO_WORKERS_AVAILABLE, NO_WORKERS_WITH_CAPACITY, selectWorkerWeightedByLoad, type SelectionCandidate } from "./selection.ts";

// Mirrors livekit/livekit pkg/service/agentservice.go selectWorkerWeightedByLoad.
describe("selectWorkerWeightedByLoad (pkg/service/agentservice.go)", () => {
  const w = (id: string, load: number, status: SelectionCandidate["status"] = "available"): SelectionCandidate => ({ id, load, status });

  it("picks at random weighted by max(0, 1 - load): the same seed gives the same picks", () => {
    const ws = [w("idle", 0), w("busy", 0.75)];
    const pickMany = (seed: number) => {
      const random = seededRandom(seed);
      return Array.from({ length: 2000 }, () => selectWorkerWeightedByLoad(ws, new Set(), random));
    };
    const picks = pickMany(7);
    expect(pickMany(7)).toEqual(picks);
    const idle = picks.filter((p) => p.ok && p.id === "idle").length;
    // Expected share 1 / (1 + 0.25) = 0.8; bounds are wide, and the seed makes it exact anyway.
    expect(idle / picks.length).toBeGreaterThan(0.75);
    expect(idle / picks.length).toBeLessThan(0.85);
  });

  it("never picks a worker with load >= 1, a WS_FULL worker or one already attempted", () => {
    const ws = [w("overloaded", 1), w("over", 1.3), w("full", 0, "full"), w("tried", 0), w("ok", 0.9)];
    const random = seededRandom(1);
    for (let i = 0; i < 200; i++) {
      expect(selectWorkerWeightedByLoad(ws, new Set(["tried"]), random)).toEqual({ ok: true, id: "ok" });
    }
  });

  it('no workers for the key → "no workers available"; no weight left → "no workers with sufficient capacity"', () => {
    expect(selectWorkerWeightedByLoad([], new Set(), Math.random)).toEqual({ ok: false, error: NO_WORKERS_AVAILABLE });
    expect(selectWorkerWeightedByLoad([w("a", 1), w("b", 0, "full")], new Set(), Math.random)).toEqual({ ok: false, error: NO_WORKERS_WITH_CAPACITY });
    expect(selectWorkerWeightedByLoad([w("a", 0)], new Set(["a"]), Math.random)).toEqual({ ok: false, error: NO_WORKERS_WITH_CAPACITY });
  });

  it("treats a non-finite load as full and survives a random source returning its upper edge", () => {
    expect(selectWorkerWeightedByLoad([w("nan", Number.NaN)], new Set(), Math.random)).toEqual({ ok: false, error: NO_WORKERS_WITH_CAPACITY });
    expect(selectWorkerWeightedByLoad([w("a", 0.5), w("b", 0.5)], new Set(), () => 0.9999999999)).toEqual({ ok: true, id: "b" });
    expect(selectWorkerWeightedByLoad([w("a", 0.5), w("b", 0.5)], new Set(), () => 0)).toEqual({ ok: true, id: "a" });
  });

  it("seededRandom refuses a seed that is not a safe integer", () => {
    expect(() => seededRandom(1.5)).toThrow(/safe integer/);
  });
});
