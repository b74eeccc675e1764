/**
 * `compare(store, { base, candidate })`: is the candidate version better, the same or worse?
 *
 * The method is Kayenta's (Spinnaker's canary judge), applied to voice metrics: per metric, drop
 * outliers from each side (IQR fence), run a two-sided Mann-Whitney U test on the per-call
 * values, estimate the shift with Hodges-Lehmann and call a metric changed only if it is both
 * statistically significant and outside a tolerance band (a 3% slower TTFB that is "significant"
 * at 10,000 calls is not a reason to roll back). Failure rate is tested with Fisher's exact test.
 *
 * `confidence` is for the whole verdict, not per metric: with the default Bonferroni correction
 * each of the m tests runs at α = (1 − confidence) / m, so a candidate with no real change is
 * flagged with probability ≤ 1 − confidence however many metrics we look at.
 *
 * The verdicts follow the rollback decision table of the deploy docs:
 *   roll_back          candidate calls fail or drop at an elevated rate, or a hard latency
 *                      regression (a latency metric worse by ≥ `hardLatencyRegression`)
 *   escalate           degraded cost or quality, not correctness (a latency regression under
 *                      the hard threshold, cost or tokens per call up): look at voicegateway
 *   promote            no regression found
 *   insufficient_data  fewer than `minCalls` calls on either side
 */
import { Bucket, METRICS, type MetricDefinition, type MetricKind } from "./bucket.ts";
import type { MetricsStore } from "./store.ts";
import { fisherGreater, hodgesLehmann, mannWhitney, removeOutliers } from "./stats.ts";

export type Verdict = "roll_back" | "escalate" | "promote" | "insufficient_data";

export const VERDICT_EXIT_CODES: Readonly<Record<Verdict, number>> = { promote: 0, roll_back: 1, escalate: 3, insufficient_data: 4 };

export interface CompareOptions {
  base: string;
  candidate: string;
  /** Only this tenant / agent (default: every tenant and agent of each version, pooled). */
  tenant?: string;
  agent?: string;
  /** Confidence of the verdict as a whole. Default 0.98 (Kayenta's default). */
  confidence?: number;
  /** Relative shift (of the base median) below which a metric counts as unchanged. Default 0.10. */
  tolerance?: number;
  /** Relative latency shift at or above which a regression means roll back. Default 0.20. */
  hardLatencyRegression?: number;
  /** Absolute failure-rate increase below which failures count as unchanged. Default 0.02. */
  failureRateTolerance?: number;
  /** Calls needed on each side before any verdict but insufficient_data. Default 30. */
  minCalls?: number;
  /** Per-call samples a metric needs on each side to be tested. Default 20. */
  minSamples?: number;
  /** IQR fence factor for outlier removal; 0 disables. Default 3. */
  outlierFactor?: number;
  /** Multiple-testing correction across metrics. Default "bonferroni". */
  correction?: "bonferroni" | "none";
}

export const COMPARE_DEFAULTS = {
  confidence: 0.98,
  tolerance: 0.1,
  hardLatencyRegression: 0.2,
  failureRateTolerance: 0.02,
  minCalls: 30,
  minSamples: 20,
  outlierFactor: 3,
  correction: "bonferroni" as const,
};

export type MetricClassification = "pass" | "regression" | "hard_regression" | "improvement" | "insufficient" | "info";

export interface SideSummary {
  readonly calls: number;
  /** Per-call samples the test used (after outlier removal). */
  readonly samples: number;
  readonly outliersRemoved: number;
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
  readonly mean: number | null;
  /** Failure rate for `failure_rate`, else the sketch's p95. */
  readonly value: number | null;
}

export interface MetricComparison {
  readonly name: string;
  readonly kind: MetricKind | "correctness";
  readonly unit: string;
  readonly base: SideSummary;
  readonly candidate: SideSummary;
  /** candidate/base − 1 of `value` (absolute difference for failure_rate). */
  readonly delta: number | null;
  /** Hodges-Lehmann shift of the per-call values relative to the base median, with its interval. */
  readonly shift: { readonly relative: number; readonly lower: number; readonly upper: number } | null;
  readonly pValue: number | null;
  readonly alpha: number;
  readonly significant: boolean;
  readonly classification: MetricClassification;
  readonly statement: string;
}

export interface ComparisonResult {
  readonly base: string;
  readonly candidate: string;
  readonly verdict: Verdict;
  readonly reason: string;
  readonly exitCode: number;
  readonly options: Required<Omit<CompareOptions, "tenant" | "agent">> & { tenant?: string; agent?: string };
  readonly calls: { readonly base: number; readonly candidate: number };
  readonly metrics: readonly MetricComparison[];
}

/** The demo's JSON summary shape: `comparison: { base, candidate, verdict, metrics: [...] }`. */
export interface ComparisonSummary {
  readonly base: string;
  readonly candidate: string;
  readonly verdict: Verdict;
  readonly reason: string;
  readonly metrics: readonly { readonly name: string; readonly base: number | null; readonly candidate: number | null; readonly delta: number | null; readonly significant: boolean }[];
}

export class CompareOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CompareOptionsError";
  }
}

function pool(store: MetricsStore, version: string, tenant: string | undefined, agent: string | undefined): Bucket {
  const pooled = new Bucket({ version, tenant: tenant ?? "*", agent: agent ?? "*" });
  for (const b of store.buckets({ version, ...(tenant === undefined ? {} : { tenant }), ...(agent === undefined ? {} : { agent }) })) pooled.merge(b);
  return pooled;
}

function validate(options: CompareOptions): ComparisonResult["options"] {
  if (typeof options.base !== "string" || options.base === "" || typeof options.candidate !== "string" || options.candidate === "") throw new CompareOptionsError("base and candidate versions are required");
  if (options.base === options.candidate) throw new CompareOptionsError(`base and candidate are the same version (${options.base})`);
  const o = { ...COMPARE_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as ComparisonResult["options"];
  if (!(o.confidence > 0.5 && o.confidence < 1)) throw new CompareOptionsError(`confidence must be in (0.5, 1), got ${o.confidence}`);
  for (const k of ["tolerance", "hardLatencyRegression", "failureRateTolerance", "outlierFactor"] as const) {
    if (!(o[k] >= 0) || !Number.isFinite(o[k])) throw new CompareOptionsError(`${k} must be a finite number ≥ 0, got ${o[k]}`);
  }
  if (o.hardLatencyRegression < o.tolerance) throw new CompareOptionsError(`hardLatencyRegression (${o.hardLatencyRegression}) must be ≥ tolerance (${o.tolerance})`);
  for (const k of ["minCalls", "minSamples"] as const) if (!Number.isInteger(o[k]) || o[k] < 2) throw new CompareOptionsError(`${k} must be an integer ≥ 2, got ${o[k]}`);
  if (o.correction !== "bonferroni" && o.correction !== "none") throw new CompareOptionsError(`correction must be "bonferroni" or "none"`);
  return o;
}

function side(bucket: Bucket, metric: MetricDefinition, samples: number, removed: number): SideSummary {
  const sketch = bucket.sketches.get(metric.name);
  const p95 = sketch?.quantile(0.95) ?? null;
  return { calls: bucket.counters.calls, samples, outliersRemoved: removed, p50: sketch?.quantile(0.5) ?? null, p95, p99: sketch?.quantile(0.99) ?? null, mean: sketch?.mean ?? null, value: p95 };
}

const pct = (x: number): string => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
const fmtP = (p: number): string => (p < 1e-4 ? p.toExponential(1) : p.toPrecision(2));

export function compare(store: MetricsStore, options: CompareOptions): ComparisonResult {
  const o = validate(options);
  const baseBucket = pool(store, o.base, o.tenant, o.agent);
  const candBucket = pool(store, o.candidate, o.tenant, o.agent);
  const calls = { base: baseBucket.counters.calls, candidate: candBucket.counters.calls };
  const gating = METRICS.filter((m) => m.kind !== "info").length + 1;
  const alpha = o.correction === "bonferroni" ? (1 - o.confidence) / gating : 1 - o.confidence;
  const ciConfidence = 1 - alpha;
  const metrics: MetricComparison[] = [];

  // Failure rate: calls that ended failed or cancelled ("fail or drop" in the rollback table).
  const bf = baseBucket.counters.failed + baseBucket.counters.cancelled;
  const cf = candBucket.counters.failed + candBucket.counters.cancelled;
  const baseRate = calls.base > 0 ? bf / calls.base : null;
  const candRate = calls.candidate > 0 ? cf / calls.candidate : null;
  {
    const enough = calls.base >= o.minCalls && calls.candidate >= o.minCalls;
    const p = enough ? fisherGreater(cf, calls.candidate, bf, calls.base) : null;
    const delta = baseRate !== null && candRate !== null ? candRate - baseRate : null;
    const significant = p !== null && delta !== null && p < alpha && delta > o.failureRateTolerance;
    const rateSide = (n: number, rate: number | null): SideSummary => ({ calls: n, samples: n, outliersRemoved: 0, p50: null, p95: null, p99: null, mean: rate, value: rate });
    metrics.push({
      name: "failure_rate",
      kind: "correctness",
      unit: "ratio",
      base: rateSide(calls.base, baseRate),
      candidate: rateSide(calls.candidate, candRate),
      delta,
      shift: null,
      pValue: p,
      alpha,
      significant,
      classification: !enough ? "insufficient" : significant ? "hard_regression" : "pass",
      statement: !enough
        ? `not tested: needs ≥ ${o.minCalls} calls per side`
        : `candidate ${(100 * (candRate ?? 0)).toFixed(1)}% vs base ${(100 * (baseRate ?? 0)).toFixed(1)}% failed or dropped; Fisher p = ${fmtP(p as number)} ${significant ? "<" : p! < alpha ? "<" : "≥"} α = ${fmtP(alpha)}${p! < alpha && !significant ? `, but within the ${(o.failureRateTolerance * 100).toFixed(1)} point tolerance` : ""}`,
    });
  }

  for (const metric of METRICS) {
    const rawBase = [...(baseBucket.reservoirs.get(metric.name)?.sample() ?? [])];
    const rawCand = [...(candBucket.reservoirs.get(metric.name)?.sample() ?? [])];
    const x = removeOutliers(rawBase, o.outlierFactor);
    const y = removeOutliers(rawCand, o.outlierFactor);
    const baseSide = side(baseBucket, metric, x.length, rawBase.length - x.length);
    const candSide = side(candBucket, metric, y.length, rawCand.length - y.length);
    const delta = baseSide.value !== null && candSide.value !== null && baseSide.value > 0 ? candSide.value / baseSide.value - 1 : null;
    const common = { name: metric.name, kind: metric.kind, unit: metric.unit, base: baseSide, candidate: candSide, delta, alpha };
    if (x.length < o.minSamples || y.length < o.minSamples) {
      metrics.push({ ...common, shift: null, pValue: null, significant: false, classification: metric.kind === "info" ? "info" : "insufficient", statement: `not tested: ${x.length} base / ${y.length} candidate per-call samples, needs ≥ ${o.minSamples} per side` });
      continue;
    }
    const test = mannWhitney(x, y);
    const hl = hodgesLehmann(x, y, ciConfidence);
    const baseMedian = quantileOf(x, 0.5);
    const scale = baseMedian > 0 ? baseMedian : Math.max(1e-12, Math.abs(quantileOf(x, 0.75)));
    const shift = { relative: hl.estimate / scale, lower: hl.lower / scale, upper: hl.upper / scale };
    const statistically = test.pValue < alpha;
    const practically = Math.abs(shift.relative) > o.tolerance;
    const significant = statistically && practically;
    let classification: MetricClassification;
    if (metric.kind === "info") classification = "info";
    else if (!significant) classification = "pass";
    else if (shift.relative < 0) classification = "improvement";
    else classification = metric.kind === "latency" && shift.relative >= o.hardLatencyRegression ? "hard_regression" : "regression";
    const ci = `${Math.round(ciConfidence * 1000) / 10}% CI ${pct(shift.lower)}..${pct(shift.upper)}`;
    const statement = `shift ${pct(shift.relative)} (${ci}); Mann-Whitney p = ${fmtP(test.pValue)} ${statistically ? "<" : "≥"} α = ${fmtP(alpha)}${statistically && !practically ? `, within the ±${(o.tolerance * 100).toFixed(0)}% tolerance` : ""}`;
    metrics.push({ ...common, shift, pValue: test.pValue, significant, classification, statement });
  }

  const { verdict, reason } = decide(metrics, calls, o);
  return { base: o.base, candidate: o.candidate, verdict, reason, exitCode: VERDICT_EXIT_CODES[verdict], options: o, calls, metrics };
}

function quantileOf(values: readonly number[], q: number): number {
  const s = Float64Array.from(values).sort();
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(s.length - 1, lo + 1);
  return (s[lo] as number) + (h - lo) * ((s[hi] as number) - (s[lo] as number));
}

function decide(metrics: readonly MetricComparison[], calls: { base: number; candidate: number }, o: ComparisonResult["options"]): { verdict: Verdict; reason: string } {
  if (calls.base < o.minCalls || calls.candidate < o.minCalls) {
    return { verdict: "insufficient_data", reason: `${calls.base} base and ${calls.candidate} candidate calls; every verdict but this one needs ≥ ${o.minCalls} calls per side` };
  }
  const describe = (m: MetricComparison): string => (m.name === "failure_rate" ? `failure_rate ${pct(m.delta ?? 0).replace("%", " points")}` : `${m.name} ${pct(m.shift?.relative ?? 0)}`);
  const hard = metrics.filter((m) => m.classification === "hard_regression");
  if (hard.length > 0) {
    const correctness = hard.some((m) => m.kind === "correctness");
    return { verdict: "roll_back", reason: `${correctness ? "candidate calls fail or drop at an elevated rate" : "hard latency regression"}: ${hard.map(describe).join(", ")}` };
  }
  const soft = metrics.filter((m) => m.classification === "regression");
  if (soft.length > 0) return { verdict: "escalate", reason: `degraded ${soft.map((m) => (m.kind === "cost" ? "cost" : "quality")).filter((v, i, a) => a.indexOf(v) === i).join(" and ")}, not correctness: ${soft.map(describe).join(", ")}` };
  const tested = metrics.filter((m) => m.classification !== "insufficient" && m.classification !== "info").length;
  return { verdict: "promote", reason: `no regression in ${tested} tested metrics at ${Math.round(o.confidence * 100)}% confidence` };
}

/** The summary the demo records (`comparison` in its JSON summary). */
export function toSummary(result: ComparisonResult): ComparisonSummary {
  return {
    base: result.base,
    candidate: result.candidate,
    verdict: result.verdict,
    reason: result.reason,
    metrics: result.metrics.map((m) => ({ name: m.name, base: m.base.value, candidate: m.candidate.value, delta: m.delta, significant: m.significant })),
  };
}

/** A fixed-width table for terminals (what `openrtc compare` prints). */
export function formatComparison(result: ComparisonResult): string {
  const fmt = (m: MetricComparison, v: number | null): string => {
    if (v === null) return "—";
    if (m.name === "failure_rate") return `${(v * 100).toFixed(1)}%`;
    if (m.unit === "USD") return `$${v.toFixed(4)}`;
    if (m.unit === "ms") return `${v.toFixed(0)} ms`;
    if (m.unit === "s") return `${v.toFixed(1)} s`;
    return v.toFixed(0);
  };
  const rows = result.metrics.map((m) => [
    m.name,
    fmt(m, m.base.value),
    fmt(m, m.candidate.value),
    m.delta === null ? "—" : m.name === "failure_rate" ? `${m.delta >= 0 ? "+" : ""}${(m.delta * 100).toFixed(1)} pt` : pct(m.delta),
    m.classification,
    m.statement,
  ]);
  const header = ["metric", `${result.base} (p95)`, `${result.candidate} (p95)`, "Δ", "result", "evidence"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number))).join("  ");
  return [
    `compare ${result.base} (${result.calls.base} calls) → ${result.candidate} (${result.calls.candidate} calls)`,
    line(header),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map(line),
    "",
    `verdict: ${result.verdict} — ${result.reason}`,
  ].join("\n");
}
