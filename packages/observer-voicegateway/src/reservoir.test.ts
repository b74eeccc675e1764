import { describe, expect, it } from "vitest";
import { Reservoir, seededRandom } from "./reservoir.ts";

describe("Reservoir", () => {
  it("keeps everything below capacity and a bounded sample above it", () => {
    const r = new Reservoir(10, seededRandom(1));
    for (let i = 0; i < 5; i++) r.add(i);
    expect([...r.sample()]).toEqual([0, 1, 2, 3, 4]);
    for (let i = 5; i < 1000; i++) r.add(i);
    expect(r.size).toBe(10);
    expect(r.seen).toBe(1000);
    expect(r.add(Number.NaN)).toBe(false);
  });

  it("is a uniform sample: each value's inclusion frequency ≈ capacity/seen", () => {
    const hits = new Array(100).fill(0) as number[];
    const random = seededRandom(7);
    for (let t = 0; t < 4000; t++) {
      const r = new Reservoir(10, random);
      for (let i = 0; i < 100; i++) r.add(i);
      for (const v of r.sample()) hits[v]!++;
    }
    for (const h of hits) expect(h / 4000).toBeGreaterThan(0.07), expect(h / 4000).toBeLessThan(0.13);
  });

  it("merge draws from each side in proportion to what it has seen", () => {
    const random = seededRandom(3);
    let fromA = 0;
    for (let t = 0; t < 500; t++) {
      const a = new Reservoir(20, random);
      const b = new Reservoir(20, random);
      for (let i = 0; i < 300; i++) a.add(1);
      for (let i = 0; i < 100; i++) b.add(2);
      a.merge(b);
      expect(a.size).toBe(20);
      expect(a.seen).toBe(400);
      fromA += a.sample().filter((v) => v === 1).length;
    }
    expect(fromA / (500 * 20)).toBeCloseTo(0.75, 1);
  });

  it("merge of small reservoirs is their concatenation; an empty side changes nothing", () => {
    const a = new Reservoir(10);
    const b = new Reservoir(10);
    a.add(1);
    b.add(2);
    expect([...a.merge(b).sample()]).toEqual([1, 2]);
    expect([...a.merge(new Reservoir(10)).sample()]).toEqual([1, 2]);
  });

  it("round-trips JSON and rejects inconsistent JSON", () => {
    const r = new Reservoir(3);
    [1, 2, 3, 4].forEach((v) => r.add(v));
    expect(Reservoir.fromJSON(JSON.parse(JSON.stringify(r))).toJSON()).toEqual(r.toJSON());
    expect(() => new Reservoir(0)).toThrow(RangeError);
    expect(() => Reservoir.fromJSON(null)).toThrow(TypeError);
    expect(() => Reservoir.fromJSON({ capacity: 1 })).toThrow(TypeError);
    expect(() => Reservoir.fromJSON({ capacity: 1, seen: 2, values: [1, 2] })).toThrow(/inconsistent/);
    expect(() => Reservoir.fromJSON({ capacity: 2, seen: 2, values: [1, "x"] })).toThrow(/inconsistent/);
  });
});
