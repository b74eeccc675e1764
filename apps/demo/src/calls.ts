// The simulated call stream: a schedule fixed entirely by (calls, seed), so the same seed gives
// the same calls, durations, tenants and pacing on every run. Which worker ends up taking each
// call is decided at run time by the dispatcher, not here.

/** One simulated call. */
export interface PlannedCall {
  /** 0-based position in the stream. */
  index: number;
  /** Which traffic wave releases it (see `waveOf`). */
  wave: number;
  /** Pause before dispatching this call, after the previous call of its wave. */
  gapMs: number;
  /** How long the caller talks once the agent answered, before hanging up. */
  durationMs: number;
  tenant: string;
}

export interface ScheduleOptions {
  calls: number;
  seed: number;
  /** Traffic waves the calls are split into, in order. Default 5. */
  waves?: number;
  /** Call duration range, ms. Default 500–4000. */
  minDurationMs?: number;
  maxDurationMs?: number;
  /** Pause range between two calls of a wave, ms. Default 600–1200: each job forks a process that
   *  needs ~1.7 s of CPU to start, so faster pacing overloads a 2-core machine. */
  minGapMs?: number;
  maxGapMs?: number;
}

export const TENANTS = ["acme", "globex", "initech", "umbrella", "hooli"] as const;

/**
 * mulberry32: a tiny, well-mixed 32-bit PRNG. Not for secrets; for reproducible schedules.
 * Returns floats in [0, 1).
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Builds the call schedule for a seed. Pure: the same options always give the same schedule. */
export function buildSchedule(options: ScheduleOptions): PlannedCall[] {
  const { calls, seed } = options;
  if (!Number.isSafeInteger(calls) || calls < 0) throw new RangeError(`calls must be a non-negative integer, got ${calls}`);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const waves = options.waves ?? 5;
  if (!Number.isSafeInteger(waves) || waves < 1) throw new RangeError(`waves must be a positive integer, got ${waves}`);
  const minD = options.minDurationMs ?? 500;
  const maxD = options.maxDurationMs ?? 4000;
  const minG = options.minGapMs ?? 600;
  const maxG = options.maxGapMs ?? 1200;
  if (!(minD > 0 && maxD >= minD)) throw new RangeError(`duration range must satisfy 0 < min <= max, got ${minD}–${maxD} ms`);
  if (!(minG >= 0 && maxG >= minG)) throw new RangeError(`gap range must satisfy 0 <= min <= max, got ${minG}–${maxG} ms`);
  const random = mulberry32(seed);
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const out: PlannedCall[] = [];
  for (let index = 0; index < calls; index++) {
    out.push({
      index,
      wave: waveOf(index, calls, waves),
      gapMs: between(minG, maxG),
      durationMs: between(minD, maxD),
      tenant: TENANTS[Math.floor(random() * TENANTS.length)]!,
    });
  }
  return out;
}

/** Splits `calls` as evenly as possible over `waves`, earlier waves taking the remainder. */
export function waveOf(index: number, calls: number, waves: number): number {
  const base = Math.floor(calls / waves);
  const extra = calls % waves;
  // The first `extra` waves hold base + 1 calls.
  const big = extra * (base + 1);
  if (index < big) return Math.floor(index / (base + 1));
  return base === 0 ? waves - 1 : extra + Math.floor((index - big) / base);
}

/**
 * Job metadata: the tenant OpenRTC labels by and the call's index. No duration: the agent holds
 * until its caller hangs up, and the caller (not the agent) decides when that is.
 */
export function callMetadata(call: PlannedCall): string {
  return JSON.stringify({ tenant: call.tenant, call: call.index });
}
