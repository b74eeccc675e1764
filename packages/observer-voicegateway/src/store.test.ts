import { describe, expect, it } from "vitest";
import { Bucket } from "./bucket.ts";
import { compare } from "./compare.ts";
import { seededRandom } from "./reservoir.ts";
import { EXPORT_FORMAT, InMemoryStore, OTHER_TENANT } from "./store.ts";
import { syntheticCalls } from "./testing/synthetic.ts";

describe("buckets and the in-memory store", () => {
  it("buckets per (version, tenant, agent) and counts outcomes and totals", () => {
    const store = new InMemoryStore();
    const random = seededRandom(1);
    const calls = [...syntheticCalls({ version: "v1", tenant: "a", failureRate: 0.5 }, 20, random), ...syntheticCalls({ version: "v1", tenant: "b" }, 5, random), ...syntheticCalls({ version: "v2", agent: "sales" }, 3, random)];
    for (const c of calls) store.record(c);
    expect(store.size).toBe(3);
    expect(store.versions()).toEqual(["v1", "v2"]);
    const a = store.buckets({ version: "v1", tenant: "a" })[0]!;
    expect(a.counters.calls).toBe(20);
    expect(a.counters.success + a.counters.failed).toBe(20);
    expect(a.counters.turns).toBe(120);
    expect(a.sketches.get("tts_ttfb_ms")!.count).toBe(120);
    expect(a.reservoirs.get("tts_ttfb_ms")!.seen).toBe(20);
    expect(a.counters.costUsd).toBeCloseTo(calls.slice(0, 20).reduce((s, c) => s + c.costUsd, 0), 10);
  });

  it("an export from several workers merges into the buckets one worker would have built", () => {
    const random = seededRandom(2);
    const calls = syntheticCalls({ version: "v1" }, 90, random);
    const whole = new InMemoryStore();
    const parts = [new InMemoryStore(), new InMemoryStore(), new InMemoryStore()];
    calls.forEach((c, i) => {
      whole.record(c);
      parts[i % 3]!.record(c);
    });
    const merged = new InMemoryStore();
    for (const p of parts) expect(merged.load(JSON.parse(JSON.stringify(p.toExport())))).toBe(1);
    const w = whole.buckets()[0]!;
    const m = merged.buckets()[0]!;
    expect(m.counters.calls).toBe(90);
    expect(m.counters.turns).toBe(w.counters.turns);
    for (const [name, sketch] of w.sketches) {
      for (const q of [0.5, 0.95, 0.99]) expect(m.sketches.get(name)!.quantile(q)).toBe(sketch.quantile(q));
    }
    // reservoirs (capacity 512) hold every call here, so the merged sample is the same set
    expect([...m.reservoirs.get("e2e_latency_ms")!.sample()].sort()).toEqual([...w.reservoirs.get("e2e_latency_ms")!.sample()].sort());
  });

  it("bounds the number of buckets by pooling new tenants under 'other'", () => {
    const store = new InMemoryStore({ maxBuckets: 2 });
    const random = seededRandom(3);
    for (const t of ["a", "b", "c", "d"]) for (const c of syntheticCalls({ version: "v1", tenant: t }, 1, random)) store.record(c);
    expect(store.size).toBe(3);
    expect(store.buckets({ tenant: OTHER_TENANT })[0]!.counters.calls).toBe(2);
  });

  it("rejects malformed exports and buckets", () => {
    const store = new InMemoryStore();
    expect(() => store.load({})).toThrow(TypeError);
    expect(() => store.load({ format: EXPORT_FORMAT, buckets: [{}] })).toThrow(/key/);
    expect(() => Bucket.fromJSON(null)).toThrow(TypeError);
    expect(() => Bucket.fromJSON({ key: { version: "v", tenant: "t", agent: "a" } })).toThrow(/counters/);
  });

  it("a bucket is a few KiB however many calls it has seen", () => {
    const random = seededRandom(4);
    const b = new Bucket({ version: "v", tenant: "t", agent: "a" }, { random });
    for (const c of syntheticCalls({ version: "v" }, 5000, random)) b.add(c);
    expect(b.approximateBytes()).toBeLessThan(200_000);
    expect(compare({ buckets: (f) => (f?.version === "v" ? [b] : []) }, { base: "v", candidate: "w" }).verdict).toBe("insufficient_data");
  });
});
