import { describe, expect, it } from "vitest";
import { fisherGreater, hodgesLehmann, logGamma, mannWhitney, normalCdf, normalQuantile, removeOutliers } from "./stats.ts";

describe("stats", () => {
  it("normal CDF and quantile match tables", () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
    expect(normalCdf(1.959964)).toBeCloseTo(0.975, 6);
    expect(normalCdf(-2.326348)).toBeCloseTo(0.01, 6);
    expect(normalQuantile(0.99)).toBeCloseTo(2.326348, 5);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232, 5);
    expect(() => normalQuantile(1)).toThrow(RangeError);
  });

  it("Mann-Whitney: U and p match a hand-worked example", () => {
    // y beats x in 25 + 2 = 27 pairs; mean 15, variance 5·6·12/12 = 30;
    // z = (27 − 15 − 0.5)/√30 = 2.0996, two-sided p = 2(1 − Φ(2.0996)) = 0.03576.
    const r = mannWhitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 2.5]);
    expect(r.u).toBe(27);
    expect(r.z).toBeCloseTo(2.0996, 3);
    expect(r.pValue).toBeCloseTo(0.03576, 4);
    expect(mannWhitney([], [1]).pValue).toBeNaN();
    expect(mannWhitney([1, 1], [1, 1]).pValue).toBe(1);
  });

  it("Hodges-Lehmann recovers a known shift and its interval covers it", () => {
    const x = Array.from({ length: 50 }, (_, i) => i);
    const y = x.map((v) => v + 10);
    const hl = hodgesLehmann(x, y, 0.95);
    expect(hl.estimate).toBe(10);
    expect(hl.lower).toBeLessThanOrEqual(10);
    expect(hl.upper).toBeGreaterThanOrEqual(10);
    expect(hodgesLehmann([], [1], 0.95).estimate).toBeNaN();
  });

  it("removes outliers outside the IQR fence only", () => {
    const values = [10, 11, 12, 13, 14, 15, 1000];
    expect(removeOutliers(values, 3)).toEqual([10, 11, 12, 13, 14, 15]);
    expect(removeOutliers(values, 0)).toEqual(values);
    expect(removeOutliers([1, 2, 1000], 3)).toEqual([1, 2, 1000]);
  });

  it("Fisher's exact one-sided test matches the hypergeometric tail worked by hand", () => {
    // 8/10 vs 1/6 failed: N=16, K=9, n=10; P(X≥8) = (C(9,8)C(7,2) + C(9,9)C(7,1)) / C(16,10) = 196/8008
    expect(fisherGreater(8, 10, 1, 6)).toBeCloseTo(196 / 8008, 10);
    expect(fisherGreater(0, 10, 0, 10)).toBe(1);
    expect(fisherGreater(1, 0, 1, 10)).toBe(1);
    expect(logGamma(10)).toBeCloseTo(Math.log(362880), 10);
    expect(logGamma(0.25)).toBeCloseTo(1.2880225246980774, 10);
  });
});
