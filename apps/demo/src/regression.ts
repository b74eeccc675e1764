// The regression the demo injects into its new version, and how the demo judges it.
//
// v2.0.0's agent is worse than v1.0.0's in two ways, by amounts fixed by the run's seed:
//   - slower TTS: every TTS request's time to first byte is multiplied by 1 + `ttsSlowdown`
//     (50–100% slower);
//   - more failed calls: a `failureRate` share of its calls (20–40%) hit an unrecoverable TTS
//     provider error after the greeting (the caller hears no answer). The call itself stays up
//     until the caller hangs up, so OpenRTC drops nothing (the demo's zero-dropped-calls check
//     still holds); the observer counts the call as failed (`DemoObserver` in agent.ts).
// The coordinator process runs an OpenRTC collector; every job process ships its call records
// there; before rolling back the coordinator runs `compare` on both versions' calls.
import { compare, formatComparison, type CompareOptions, type ComparisonResult, type InMemoryStore } from "@openrtc/observer-voicegateway";
import { mulberry32 } from "./calls.ts";

/** Environment variable the coordinator sets for every worker (job processes inherit it). */
export const REGRESSION_ENV = "OPENRTC_DEMO_REGRESSION";

export interface Regression {
  /** The version whose agent carries the regression. */
  version: string;
  /** TTS TTFB is multiplied by 1 + ttsSlowdown. */
  ttsSlowdown: number;
  /** Share of the version's calls that fail (seeded per call). */
  failureRate: number;
  /** The run's seed: per-call draws (TTS latency, failure) are keyed by (seed, call index). */
  seed: number;
}

const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The regression for a run: same seed, same amounts. */
export function regressionFor(seed: number, version: string): Regression {
  const random = mulberry32((seed ^ 0x7e9e55) >>> 0);
  return { version, ttsSlowdown: round(0.5 + 0.5 * random()), failureRate: round(0.2 + 0.2 * random()), seed };
}

export function encodeRegression(r: Regression): string {
  return JSON.stringify(r);
}

/** Reads the regression from the environment; undefined when unset or malformed (no regression). */
export function decodeRegression(raw: string | undefined): Regression | undefined {
  if (raw === undefined || raw === "") return undefined;
  try {
    const r = JSON.parse(raw) as Partial<Regression>;
    if (typeof r.version !== "string" || typeof r.ttsSlowdown !== "number" || typeof r.failureRate !== "number" || typeof r.seed !== "number") return undefined;
    return { version: r.version, ttsSlowdown: r.ttsSlowdown, failureRate: r.failureRate, seed: r.seed };
  } catch {
    return undefined;
  }
}

/** What one call of the agent does: its TTS latency and whether it fails. Pure in (regression, version, call). */
export interface CallPlan {
  /** TTS time to first byte this call's provider double waits, ms. */
  ttsTtfbMs: number;
  /** LLM time to first token the fake LLM waits, ms (the same distribution on every version). */
  llmTtftMs: number;
  /** The reply's TTS request fails unrecoverably. */
  fails: boolean;
  /** Which canned reply the agent speaks (varies the characters billed per call). */
  reply: number;
}

/** Base TTS TTFB range, ms: well above a loaded 2-core box's timer jitter. */
export const BASE_TTS_TTFB_MS: readonly [number, number] = [150, 250];

export function planCall(regression: Regression | undefined, version: string | null, callIndex: number, seed = regression?.seed ?? 1): CallPlan {
  // Keyed by (seed, call): a call's draws do not depend on which worker took it or when.
  const random = mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(callIndex + 1, 0x85ebca6b)) >>> 0);
  const [lo, hi] = BASE_TTS_TTFB_MS;
  const base = lo + random() * (hi - lo);
  const llmTtftMs = 20 + random() * 40;
  const failDraw = random();
  const reply = Math.floor(random() * 4);
  const regressed = regression !== undefined && version === regression.version;
  return {
    ttsTtfbMs: Math.round(regressed ? base * (1 + regression.ttsSlowdown) : base),
    llmTtftMs: Math.round(llmTtftMs),
    fails: regressed && failDraw < regression.failureRate,
    reply,
  };
}

/**
 * compare's options for the demo's size. The package defaults (30 calls and 20 per-call samples
 * per side) are for production traffic; the demo's default run has about a dozen calls per
 * version when it judges. 8 is the guard here: at the default confidence (0.98, Bonferroni over
 * the 7 gating tests: α ≈ 0.0025 per test), the Mann-Whitney test cannot reach significance
 * below about 7 calls per side however large the shift, so fewer calls could only ever read as
 * "no regression". Confidence, tolerance and thresholds stay at the package defaults.
 */
export const DEMO_COMPARE_OPTIONS = { minCalls: 8, minSamples: 8 } as const satisfies Partial<CompareOptions>;

/** The demo's JSON summary field (`comparison`). */
export interface DemoComparison {
  base: string;
  candidate: string;
  verdict: ComparisonResult["verdict"];
  reason: string;
  calls: { base: number; candidate: number };
  /** The guard and the confidence the verdict was reached with. */
  guard: { min_calls: number; min_samples: number; confidence: number };
  metrics: { name: string; base: number | null; candidate: number | null; delta: number | null; significant: boolean; classification: string }[];
}

export function toDemoComparison(result: ComparisonResult): DemoComparison {
  return {
    base: result.base,
    candidate: result.candidate,
    verdict: result.verdict,
    reason: result.reason,
    calls: { ...result.calls },
    guard: { min_calls: result.options.minCalls, min_samples: result.options.minSamples, confidence: result.options.confidence },
    metrics: result.metrics.map((m) => ({ name: m.name, base: m.base.value, candidate: m.candidate.value, delta: m.delta, significant: m.significant, classification: m.classification })),
  };
}

/** Runs the demo's comparison on the collector's store; the table (with the guard) to print. */
export function judge(store: InMemoryStore, base: string, candidate: string): { result: ComparisonResult; text: string } {
  const result = compare(store, { base, candidate, ...DEMO_COMPARE_OPTIONS });
  const o = result.options;
  const guard = `guard: every verdict but insufficient_data needs ≥ ${o.minCalls} calls and ≥ ${o.minSamples} per-call samples per side (the demo's size; the package defaults are 30 and 20), confidence ${o.confidence}`;
  return { result, text: `${formatComparison(result)}\n${guard}` };
}

/** Calls the store holds for these versions. */
export function storedCalls(store: InMemoryStore, versions: readonly string[]): number {
  let n = 0;
  for (const v of versions) for (const b of store.buckets({ version: v })) n += b.counters.calls;
  return n;
}
