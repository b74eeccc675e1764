import { describe, expect, test } from "vitest";
import { buildSchedule, callMetadata, TENANTS, waveOf } from "./calls.ts";

describe("buildSchedule", () => {
  test("the same seed gives the same schedule, another seed another one", () => {
    const a = buildSchedule({ calls: 40, seed: 7 });
    expect(buildSchedule({ calls: 40, seed: 7 })).toEqual(a);
    expect(buildSchedule({ calls: 40, seed: 8 })).not.toEqual(a);
  });

  test("durations, gaps and tenants stay in their ranges", () => {
    for (const call of buildSchedule({ calls: 200, seed: 1 })) {
      expect(call.durationMs).toBeGreaterThanOrEqual(500);
      expect(call.durationMs).toBeLessThanOrEqual(4000);
      expect(call.gapMs).toBeGreaterThanOrEqual(600);
      expect(call.gapMs).toBeLessThanOrEqual(1200);
      expect(TENANTS).toContain(call.tenant);
    }
  });

  test("calls split over the waves in order, as evenly as possible", () => {
    const waves = buildSchedule({ calls: 8, seed: 1 }).map((c) => c.wave);
    expect(waves).toEqual([0, 0, 1, 1, 2, 2, 3, 4]);
    const many = buildSchedule({ calls: 40, seed: 1 }).map((c) => c.wave);
    expect([0, 1, 2, 3, 4].map((w) => many.filter((x) => x === w).length)).toEqual([8, 8, 8, 8, 8]);
    expect(buildSchedule({ calls: 3, seed: 1, waves: 5 }).map((c) => c.wave)).toEqual([0, 1, 2]);
    for (let calls = 0; calls < 30; calls++) {
      const ws = Array.from({ length: calls }, (_, i) => waveOf(i, calls, 5));
      expect(ws).toEqual([...ws].sort((x, y) => x - y));
      expect(Math.max(-1, ...ws)).toBeLessThan(5);
    }
  });

  test("metadata carries what the hold-call agent and the pool read", () => {
    const [call] = buildSchedule({ calls: 1, seed: 3 });
    expect(JSON.parse(callMetadata(call!))).toEqual({ tenant: call!.tenant, call: 0 });
  });

  test("bad options are refused with the option named", () => {
    expect(() => buildSchedule({ calls: -1, seed: 1 })).toThrow(/calls must be a non-negative integer/);
    expect(() => buildSchedule({ calls: 1.5, seed: 1 })).toThrow(/calls/);
    expect(() => buildSchedule({ calls: 1, seed: 0.5 })).toThrow(/seed must be an integer/);
    expect(() => buildSchedule({ calls: 1, seed: 1, waves: 0 })).toThrow(/waves/);
    expect(() => buildSchedule({ calls: 1, seed: 1, minDurationMs: 10, maxDurationMs: 5 })).toThrow(/duration range/);
    expect(() => buildSchedule({ calls: 1, seed: 1, minGapMs: -1 })).toThrow(/gap range/);
  });
});
