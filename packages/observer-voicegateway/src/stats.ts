/**
 * The statistics `compare` uses, written out so every step can be checked against a textbook:
 * Mann-Whitney U (tie-corrected normal approximation with continuity correction), the
 * Hodges-Lehmann shift estimate with its rank-based confidence interval, an IQR outlier fence,
 * and Fisher's exact test for failure rates.
 */

/** Φ(x), standard normal CDF (erfc via Numerical Recipes' Chebyshev fit, |error| < 1.2e-7). */
export function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * z);
  const erfc =
    t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - erfc / 2 : erfc / 2;
}

/** Φ⁻¹(p), Acklam's rational approximation refined by one Halley step. */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile needs 0 < p < 1, got ${p}`);
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  let x: number;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    x = (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  } else if (p <= 1 - low) {
    const q = p - 0.5;
    const r = q * q;
    x = ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x = -(((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  const e = normalCdf(x) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}

/** Linear-interpolated quantile of sorted values (type 7, as R and numpy default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return (sorted[lo] as number) + (h - lo) * ((sorted[hi] as number) - (sorted[lo] as number));
}

export function sortedCopy(values: readonly number[]): Float64Array {
  return Float64Array.from(values).sort();
}

/**
 * Removes values outside [Q1 − k·IQR, Q3 + k·IQR] (Tukey's fence; Kayenta removes outliers from
 * each side before its Mann-Whitney test). k ≤ 0 or non-finite disables the filter.
 */
export function removeOutliers(values: readonly number[], k: number): number[] {
  if (!(k > 0) || !Number.isFinite(k) || values.length < 4) return [...values];
  const s = sortedCopy(values);
  const q1 = quantileSorted(s, 0.25);
  const q3 = quantileSorted(s, 0.75);
  const iqr = q3 - q1;
  const lo = q1 - k * iqr;
  const hi = q3 + k * iqr;
  return values.filter((v) => v >= lo && v <= hi);
}

export interface MannWhitneyResult {
  /** U of the candidate (y) over the base (x): counts pairs with y > x (ties half). */
  readonly u: number;
  readonly z: number;
  /** Two-sided p-value. */
  readonly pValue: number;
  readonly n1: number;
  readonly n2: number;
}

/** Mann-Whitney U test of y against x (two-sided), tie-corrected, with continuity correction. */
export function mannWhitney(x: readonly number[], y: readonly number[]): MannWhitneyResult {
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) return { u: Number.NaN, z: Number.NaN, pValue: Number.NaN, n1, n2 };
  const all = [...x.map((v) => ({ v, g: 0 })), ...y.map((v) => ({ v, g: 1 }))].sort((a, b) => a.v - b.v);
  const n = n1 + n2;
  let rankSumY = 0;
  let tieTerm = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && all[j + 1]!.v === all[i]!.v) j++;
    const rank = (i + j) / 2 + 1;
    const t = j - i + 1;
    if (t > 1) tieTerm += t * t * t - t;
    for (let k = i; k <= j; k++) if (all[k]!.g === 1) rankSumY += rank;
    i = j + 1;
  }
  const u = rankSumY - (n2 * (n2 + 1)) / 2;
  const mean = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  if (!(variance > 0)) return { u, z: 0, pValue: 1, n1, n2 };
  const diff = u - mean;
  const corrected = Math.sign(diff) * Math.max(0, Math.abs(diff) - 0.5);
  const z = corrected / Math.sqrt(variance);
  const pValue = Math.min(1, 2 * (1 - normalCdf(Math.abs(z))));
  return { u, z, pValue, n1, n2 };
}

export interface ShiftEstimate {
  /** Hodges-Lehmann estimate of the shift y − x: the median of all pairwise differences. */
  readonly estimate: number;
  readonly lower: number;
  readonly upper: number;
  readonly confidence: number;
}

/**
 * Hodges-Lehmann shift and its distribution-free confidence interval (Lehmann 1975): the
 * k-th smallest and k-th largest pairwise differences, k from the normal approximation of U.
 */
export function hodgesLehmann(x: readonly number[], y: readonly number[], confidence: number): ShiftEstimate {
  const n1 = x.length;
  const n2 = y.length;
  if (n1 === 0 || n2 === 0) return { estimate: Number.NaN, lower: Number.NaN, upper: Number.NaN, confidence };
  const diffs = new Float64Array(n1 * n2);
  let i = 0;
  for (const yv of y) for (const xv of x) diffs[i++] = yv - xv;
  diffs.sort();
  const m = diffs.length;
  const z = normalQuantile(1 - (1 - confidence) / 2);
  const k = Math.max(0, Math.floor((n1 * n2) / 2 - z * Math.sqrt((n1 * n2 * (n1 + n2 + 1)) / 12)));
  return { estimate: quantileSorted(diffs, 0.5), lower: diffs[Math.min(k, m - 1)] as number, upper: diffs[Math.max(0, m - 1 - k)] as number, confidence };
}

/** ln Γ(x), Lanczos (g = 7, n = 9), accurate to ~1e-15 for x > 0. */
export function logGamma(x: number): number {
  const g = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = g[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += g[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

function logChoose(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

/**
 * One-sided Fisher exact test that the candidate's failure proportion exceeds the base's:
 * P(X ≥ candidateFailures) for the hypergeometric with the table's margins.
 */
export function fisherGreater(candidateFailures: number, candidateTotal: number, baseFailures: number, baseTotal: number): number {
  const failures = candidateFailures + baseFailures;
  const total = candidateTotal + baseTotal;
  if (candidateTotal === 0 || baseTotal === 0 || failures === 0) return 1;
  const logDenominator = logChoose(total, candidateTotal);
  const maxX = Math.min(failures, candidateTotal);
  let p = 0;
  for (let x = candidateFailures; x <= maxX; x++) {
    if (candidateTotal - x > total - failures) continue;
    p += Math.exp(logChoose(failures, x) + logChoose(total - failures, candidateTotal - x) - logDenominator);
  }
  return Math.min(1, p);
}
