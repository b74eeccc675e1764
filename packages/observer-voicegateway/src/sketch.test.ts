import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { DDSketch, SketchMismatchError } from "./sketch.ts";

const exactQuantile = (values: number[], q: number): number => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(q * (s.length - 1))] as number;
};
const positive = fc.double({ min: 1e-3, max: 1e7, noNaN: true, noDefaultInfinity: true });
const quantiles = [0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1];

describe("DDSketch", () => {
  it("every quantile is within the relative accuracy of the exact value of the same rank (property)", () => {
    fc.assert(
      fc.property(fc.array(positive, { minLength: 1, maxLength: 400 }), fc.constantFrom(0.005, 0.01, 0.02, 0.05), (values, alpha) => {
        const sketch = new DDSketch({ relativeAccuracy: alpha });
        for (const v of values) sketch.add(v);
        for (const q of quantiles) {
          const exact = exactQuantile(values, q);
          const got = sketch.quantile(q) as number;
          expect(Math.abs(got - exact)).toBeLessThanOrEqual(alpha * exact * (1 + 1e-9));
        }
      }),
      { seed: 14, numRuns: 300 },
    );
  });

  it("merge equals the sketch of the union, bucket for bucket (property)", () => {
    fc.assert(
      fc.property(fc.array(positive, { maxLength: 200 }), fc.array(positive, { maxLength: 200 }), fc.array(positive, { maxLength: 50 }), (a, b, c) => {
        const union = new DDSketch();
        for (const v of [...a, ...b, ...c]) union.add(v);
        const parts = [a, b, c].map((vs) => {
          const s = new DDSketch();
          for (const v of vs) s.add(v);
          return s;
        });
        const merged = parts[0]!.merge(parts[1]!).merge(parts[2]!);
        const { sum: s1, ...u } = union.toJSON();
        const { sum: s2, ...m } = merged.toJSON();
        expect(m).toEqual(u);
        expect(s2).toBeCloseTo(s1, 6);
        for (const q of quantiles) expect(merged.quantile(q)).toBe(union.quantile(q));
      }),
      { seed: 15, numRuns: 200 },
    );
  });

  it("round-trips through JSON and counts zeros", () => {
    const s = new DDSketch();
    for (const v of [0, 0, 1, 2, 3, 1000]) s.add(v);
    const r = DDSketch.fromJSON(JSON.parse(JSON.stringify(s)));
    expect(r.count).toBe(6);
    expect(r.quantile(0)).toBe(0);
    expect(r.quantile(0.2)).toBe(0);
    expect(r.quantile(1)).toBe(1000);
    expect(r.min).toBe(0);
    expect(r.mean).toBeCloseTo(1006 / 6);
  });

  it("rejects what it cannot represent instead of corrupting itself", () => {
    const s = new DDSketch();
    expect(s.add(Number.NaN)).toBe(false);
    expect(s.add(-1)).toBe(false);
    expect(s.add(Number.POSITIVE_INFINITY)).toBe(false);
    expect(s.add(1, 0)).toBe(false);
    expect(s.count).toBe(0);
    expect(s.quantile(0.5)).toBeNull();
    expect(s.quantile(2)).toBeNull();
    expect(s.min).toBeNull();
    expect(s.mean).toBeNull();
  });

  it("validates options, merges and JSON", () => {
    expect(() => new DDSketch({ relativeAccuracy: 0 })).toThrow(RangeError);
    expect(() => new DDSketch({ relativeAccuracy: 1 })).toThrow(RangeError);
    expect(() => new DDSketch({ maxBuckets: 3 })).toThrow(RangeError);
    expect(() => new DDSketch({ relativeAccuracy: 0.01 }).merge(new DDSketch({ relativeAccuracy: 0.02 }))).toThrow(SketchMismatchError);
    expect(() => DDSketch.fromJSON(null)).toThrow(SketchMismatchError);
    expect(() => DDSketch.fromJSON({ alpha: 0.01, keys: [1], counts: [] })).toThrow(SketchMismatchError);
    expect(() => DDSketch.fromJSON({ alpha: 0.01, keys: [1.5], counts: [1], count: 1 })).toThrow(/bad bucket/);
    expect(() => DDSketch.fromJSON({ alpha: 0.01, keys: [1], counts: [2], count: 5 })).toThrow(/does not match/);
  });

  it("stays bounded by maxBuckets, collapsing the lowest buckets first and saying so", () => {
    const s = new DDSketch({ maxBuckets: 16 });
    for (let i = 0; i < 100; i++) s.add(Math.pow(1.5, i));
    expect(s.bucketCount).toBeLessThanOrEqual(16);
    expect(s.collapsed).toBeGreaterThan(0);
    expect(s.count).toBe(100);
    // the top quantiles keep their guarantee
    expect(Math.abs((s.quantile(1) as number) - Math.pow(1.5, 99)) / Math.pow(1.5, 99)).toBeLessThanOrEqual(0.01);
  });
});
