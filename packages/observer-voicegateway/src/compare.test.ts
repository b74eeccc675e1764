import { describe, expect, it } from "vitest";
import { compare, CompareOptionsError, formatComparison, toSummary } from "./compare.ts";
import { InMemoryStore } from "./store.ts";
import { seededRandom } from "./reservoir.ts";
import { syntheticCalls, type SyntheticProfile } from "./testing/synthetic.ts";

function storeWith(base: SyntheticProfile & { n: number }, candidate: SyntheticProfile & { n: number }, seed: number): InMemoryStore {
  const random = seededRandom(seed);
  const store = new InMemoryStore({ random });
  for (const c of syntheticCalls(base, base.n, random)) store.record(c);
  for (const c of syntheticCalls(candidate, candidate.n, random)) store.record(c);
  return store;
}

describe("compare on synthetic data with known answers", () => {
  it("no shift → promote, nothing significant", () => {
    const store = storeWith({ version: "v1.0.0", n: 200 }, { version: "v2.0.0", n: 200 }, 1);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    expect(r.verdict).toBe("promote");
    expect(r.exitCode).toBe(0);
    expect(r.metrics.filter((m) => m.significant)).toEqual([]);
    expect(r.calls).toEqual({ base: 200, candidate: 200 });
  });

  it("a 30% slower TTS TTFB is a hard latency regression → roll_back, detected at the stated confidence", () => {
    const store = storeWith({ version: "v1.0.0", n: 200 }, { version: "v2.0.0", n: 200, ttfbShift: 1.3 }, 2);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    const ttfb = r.metrics.find((m) => m.name === "tts_ttfb_ms")!;
    expect(ttfb.significant).toBe(true);
    expect(ttfb.classification).toBe("hard_regression");
    expect(ttfb.pValue!).toBeLessThan(ttfb.alpha);
    expect(ttfb.alpha).toBeCloseTo(0.02 / 7, 10);
    expect(ttfb.shift!.lower).toBeGreaterThan(0);
    expect(ttfb.delta!).toBeGreaterThan(0.15);
    expect(r.verdict).toBe("roll_back");
    expect(r.reason).toMatch(/hard latency regression: tts_ttfb_ms \+/);
    expect(r.exitCode).toBe(1);
  });

  it("more failed calls → roll_back on correctness", () => {
    const store = storeWith({ version: "v1.0.0", n: 200, failureRate: 0.01 }, { version: "v2.0.0", n: 200, failureRate: 0.15 }, 3);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    const f = r.metrics.find((m) => m.name === "failure_rate")!;
    expect(f.significant).toBe(true);
    expect(r.verdict).toBe("roll_back");
    expect(r.reason).toMatch(/fail or drop at an elevated rate/);
  });

  it("higher cost per call, latency unchanged → escalate", () => {
    const store = storeWith({ version: "v1.0.0", n: 200 }, { version: "v2.0.0", n: 200, costShift: 1.5 }, 4);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    expect(r.verdict).toBe("escalate");
    expect(r.reason).toMatch(/degraded cost/);
    expect(r.exitCode).toBe(3);
  });

  it("a latency regression under the hard threshold → escalate (quality, not correctness)", () => {
    const store = storeWith({ version: "v1.0.0", n: 400 }, { version: "v2.0.0", n: 400, ttftShift: 1.16 }, 5);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    const ttft = r.metrics.find((m) => m.name === "llm_ttft_ms")!;
    expect(ttft.classification).toBe("regression");
    expect(r.verdict).toBe("escalate");
  });

  it("a faster candidate is an improvement, not a regression → promote", () => {
    const store = storeWith({ version: "v1.0.0", n: 200 }, { version: "v2.0.0", n: 200, ttfbShift: 0.6 }, 6);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    expect(r.metrics.find((m) => m.name === "tts_ttfb_ms")!.classification).toBe("improvement");
    expect(r.verdict).toBe("promote");
  });

  it("a significant but tiny shift stays inside the tolerance band → promote", () => {
    const store = storeWith({ version: "v1.0.0", n: 600 }, { version: "v2.0.0", n: 600, ttfbShift: 1.07 }, 7);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    const ttfb = r.metrics.find((m) => m.name === "tts_ttfb_ms")!;
    expect(ttfb.pValue!).toBeLessThan(ttfb.alpha);
    expect(ttfb.significant).toBe(false);
    expect(ttfb.statement).toMatch(/within the ±10% tolerance/);
    expect(r.verdict).toBe("promote");
  });

  it("too few calls → insufficient_data, stating the guard", () => {
    const store = storeWith({ version: "v1.0.0", n: 200 }, { version: "v2.0.0", n: 12, ttfbShift: 3 }, 8);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    expect(r.verdict).toBe("insufficient_data");
    expect(r.reason).toBe("200 base and 12 candidate calls; every verdict but this one needs ≥ 30 calls per side");
    expect(r.exitCode).toBe(4);
    expect(compare(store, { base: "v1.0.0", candidate: "v9" }).verdict).toBe("insufficient_data");
  });

  it("a metric with no samples on a side is reported as not tested, not as a pass", () => {
    const store = storeWith({ version: "v1.0.0", n: 100 }, { version: "v2.0.0", n: 100 }, 9);
    const random = seededRandom(1);
    for (const c of syntheticCalls({ version: "v3" }, 100, random)) store.record({ ...c, eouDelayMs: [] });
    const r = compare(store, { base: "v1.0.0", candidate: "v3" });
    const eou = r.metrics.find((m) => m.name === "eou_delay_ms")!;
    expect(eou.classification).toBe("insufficient");
    expect(eou.statement).toMatch(/not tested: 100 base \/ 0 candidate/);
  });

  it("filters by tenant and agent", () => {
    const random = seededRandom(10);
    const store = new InMemoryStore({ random });
    for (const c of syntheticCalls({ version: "a", tenant: "t1" }, 100, random)) store.record(c);
    for (const c of syntheticCalls({ version: "b", tenant: "t1" }, 100, random)) store.record(c);
    for (const c of syntheticCalls({ version: "b", tenant: "t2", ttfbShift: 3 }, 100, random)) store.record(c);
    expect(compare(store, { base: "a", candidate: "b", tenant: "t1" }).verdict).toBe("promote");
    expect(compare(store, { base: "a", candidate: "b" }).verdict).toBe("roll_back");
    expect(compare(store, { base: "a", candidate: "b", agent: "nobody" }).verdict).toBe("insufficient_data");
  });

  it("rejects bad options", () => {
    const store = new InMemoryStore();
    expect(() => compare(store, { base: "", candidate: "b" })).toThrow(CompareOptionsError);
    expect(() => compare(store, { base: "a", candidate: "a" })).toThrow(/same version/);
    expect(() => compare(store, { base: "a", candidate: "b", confidence: 1 })).toThrow(/confidence/);
    expect(() => compare(store, { base: "a", candidate: "b", tolerance: -1 })).toThrow(/tolerance/);
    expect(() => compare(store, { base: "a", candidate: "b", tolerance: 0.5, hardLatencyRegression: 0.2 })).toThrow(/hardLatencyRegression/);
    expect(() => compare(store, { base: "a", candidate: "b", minCalls: 1 })).toThrow(/minCalls/);
    expect(() => compare(store, { base: "a", candidate: "b", correction: "holm" as never })).toThrow(/correction/);
  });

  it("summary and table carry the verdict and every metric", () => {
    const store = storeWith({ version: "v1.0.0", n: 100 }, { version: "v2.0.0", n: 100, ttfbShift: 1.5, failureRate: 0.2 }, 11);
    const r = compare(store, { base: "v1.0.0", candidate: "v2.0.0" });
    const s = toSummary(r);
    expect(s).toMatchObject({ base: "v1.0.0", candidate: "v2.0.0", verdict: "roll_back" });
    expect(s.metrics.map((m) => m.name)).toEqual(["failure_rate", "e2e_latency_ms", "llm_ttft_ms", "tts_ttfb_ms", "eou_delay_ms", "cost_per_call_usd", "tokens_per_call", "duration_s"]);
    expect(Object.keys(s.metrics[0]!)).toEqual(["name", "base", "candidate", "delta", "significant"]);
    const table = formatComparison(r);
    expect(table).toMatch(/^compare v1.0.0 \(100 calls\) → v2.0.0 \(100 calls\)/);
    expect(table).toMatch(/tts_ttfb_ms .* hard_regression/);
    expect(table).toMatch(/verdict: roll_back — /);
  });
});
