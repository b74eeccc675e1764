/**
 * A per-(deployment_version, tenant, agent) bucket: counters, a DDSketch per metric for the
 * percentiles and a bounded reservoir per metric for the significance test.
 *
 * Two granularities, on purpose. The sketches take every observation (each turn's TTFT, each
 * TTS request's TTFB), because p95 of turn latency is what a caller feels. The reservoirs take
 * one value per call (the call's mean), because the rank test needs independent samples and the
 * call, not the turn, is the independent unit: turns of one call share a network path, a
 * provider region and a prompt, and testing them as independent would overstate confidence.
 */
import { DDSketch, type DDSketchJSON, type DDSketchOptions } from "./sketch.ts";
import { Reservoir, type ReservoirJSON, DEFAULT_RESERVOIR_CAPACITY } from "./reservoir.ts";
import type { CallRecord } from "./call.ts";

export type MetricKind = "latency" | "cost" | "info";

export interface MetricDefinition {
  readonly name: string;
  readonly kind: MetricKind;
  readonly unit: string;
  readonly description: string;
  /** Observations for the sketch (may be several per call, or none). */
  readonly observations: (call: CallRecord) => readonly number[];
}

const tokens = (c: CallRecord): number => c.promptTokens + c.completionTokens;

export const METRICS: readonly MetricDefinition[] = [
  { name: "e2e_latency_ms", kind: "latency", unit: "ms", description: "end-to-end turn latency: user stopped speaking → agent started speaking", observations: (c) => c.e2eLatencyMs },
  { name: "llm_ttft_ms", kind: "latency", unit: "ms", description: "LLM time to first token", observations: (c) => c.llmTtftMs },
  { name: "tts_ttfb_ms", kind: "latency", unit: "ms", description: "TTS time to first byte", observations: (c) => c.ttsTtfbMs },
  { name: "eou_delay_ms", kind: "latency", unit: "ms", description: "end-of-utterance delay (VAD end of speech → turn committed)", observations: (c) => c.eouDelayMs },
  { name: "cost_per_call_usd", kind: "cost", unit: "USD", description: "cost of one call from the pricing table", observations: (c) => [c.costUsd] },
  { name: "tokens_per_call", kind: "cost", unit: "tokens", description: "LLM prompt + completion tokens per call", observations: (c) => [tokens(c)] },
  { name: "duration_s", kind: "info", unit: "s", description: "call duration (informational: longer is not worse)", observations: (c) => [c.durationSeconds] },
];

export const METRIC_NAMES: readonly string[] = METRICS.map((m) => m.name);

export interface BucketKey {
  readonly version: string;
  readonly tenant: string;
  readonly agent: string;
}

export function bucketId(key: BucketKey): string {
  return JSON.stringify([key.version, key.tenant, key.agent]);
}

export interface BucketCounters {
  calls: number;
  success: number;
  failed: number;
  cancelled: number;
  turns: number;
  promptTokens: number;
  cachedPromptTokens: number;
  completionTokens: number;
  ttsCharacters: number;
  sttAudioSeconds: number;
  ttsAudioSeconds: number;
  costUsd: number;
  durationSeconds: number;
  errors: number;
  firstStartedAt: number | null;
  lastEndedAt: number | null;
}

export interface BucketJSON {
  readonly key: BucketKey;
  readonly counters: BucketCounters;
  readonly sketches: Record<string, DDSketchJSON>;
  readonly reservoirs: Record<string, ReservoirJSON>;
}

export interface BucketOptions {
  sketch?: DDSketchOptions;
  reservoirCapacity?: number;
  random?: () => number;
}

function emptyCounters(): BucketCounters {
  return {
    calls: 0, success: 0, failed: 0, cancelled: 0, turns: 0,
    promptTokens: 0, cachedPromptTokens: 0, completionTokens: 0,
    ttsCharacters: 0, sttAudioSeconds: 0, ttsAudioSeconds: 0,
    costUsd: 0, durationSeconds: 0, errors: 0, firstStartedAt: null, lastEndedAt: null,
  };
}

const COUNTER_KEYS = Object.keys(emptyCounters()) as (keyof BucketCounters)[];

export class Bucket {
  readonly key: BucketKey;
  readonly counters: BucketCounters = emptyCounters();
  readonly sketches = new Map<string, DDSketch>();
  readonly reservoirs = new Map<string, Reservoir>();
  /** 0/1 per call (1 = failed or cancelled), so a merged bucket can rerun the proportion test. */
  private readonly options: BucketOptions;

  constructor(key: BucketKey, options: BucketOptions = {}) {
    this.key = key;
    this.options = options;
    for (const metric of METRICS) {
      this.sketches.set(metric.name, new DDSketch(options.sketch));
      this.reservoirs.set(metric.name, new Reservoir(options.reservoirCapacity ?? DEFAULT_RESERVOIR_CAPACITY, options.random));
    }
  }

  add(call: CallRecord): void {
    const c = this.counters;
    c.calls++;
    if (call.status === "success") c.success++;
    else if (call.status === "failed") c.failed++;
    else c.cancelled++;
    c.turns += call.turns;
    c.promptTokens += call.promptTokens;
    c.cachedPromptTokens += call.cachedPromptTokens;
    c.completionTokens += call.completionTokens;
    c.ttsCharacters += call.ttsCharacters;
    c.sttAudioSeconds += call.sttAudioSeconds;
    c.ttsAudioSeconds += call.ttsAudioSeconds;
    c.costUsd += call.costUsd;
    c.durationSeconds += call.durationSeconds;
    c.errors += call.errors.length;
    c.firstStartedAt = c.firstStartedAt === null ? call.startedAt : Math.min(c.firstStartedAt, call.startedAt);
    c.lastEndedAt = c.lastEndedAt === null ? call.endedAt : Math.max(c.lastEndedAt, call.endedAt);
    for (const metric of METRICS) {
      const values = metric.observations(call).filter((v) => Number.isFinite(v) && v >= 0);
      if (values.length === 0) continue;
      const sketch = this.sketches.get(metric.name) as DDSketch;
      for (const v of values) sketch.add(v);
      let total = 0;
      for (const v of values) total += v;
      (this.reservoirs.get(metric.name) as Reservoir).add(total / values.length);
    }
  }

  merge(other: Bucket): this {
    for (const k of COUNTER_KEYS) {
      if (k === "firstStartedAt" || k === "lastEndedAt") continue;
      (this.counters[k] as number) += other.counters[k] as number;
    }
    const first = [this.counters.firstStartedAt, other.counters.firstStartedAt].filter((x): x is number => x !== null);
    const last = [this.counters.lastEndedAt, other.counters.lastEndedAt].filter((x): x is number => x !== null);
    this.counters.firstStartedAt = first.length === 0 ? null : Math.min(...first);
    this.counters.lastEndedAt = last.length === 0 ? null : Math.max(...last);
    for (const [name, sketch] of other.sketches) {
      const mine = this.sketches.get(name);
      if (mine === undefined) this.sketches.set(name, sketch.clone());
      else mine.merge(sketch);
    }
    for (const [name, reservoir] of other.reservoirs) {
      const mine = this.reservoirs.get(name);
      if (mine === undefined) this.reservoirs.set(name, Reservoir.fromJSON(reservoir.toJSON(), this.options.random));
      else mine.merge(reservoir);
    }
    return this;
  }

  /** A copy under another key (used to pool buckets of one version across tenants/agents). */
  cloneAs(key: BucketKey): Bucket {
    const copy = new Bucket(key, this.options);
    for (const name of [...copy.sketches.keys()]) {
      copy.sketches.delete(name);
      copy.reservoirs.delete(name);
    }
    return copy.merge(this);
  }

  toJSON(): BucketJSON {
    const sketches: Record<string, DDSketchJSON> = {};
    const reservoirs: Record<string, ReservoirJSON> = {};
    for (const [name, s] of this.sketches) sketches[name] = s.toJSON();
    for (const [name, r] of this.reservoirs) reservoirs[name] = r.toJSON();
    return { key: { ...this.key }, counters: { ...this.counters }, sketches, reservoirs };
  }

  static fromJSON(json: unknown, options: BucketOptions = {}): Bucket {
    if (json === null || typeof json !== "object") throw new TypeError("bucket JSON must be an object");
    const j = json as Partial<BucketJSON>;
    const key = j.key as Partial<BucketKey> | undefined;
    if (key === undefined || typeof key.version !== "string" || typeof key.tenant !== "string" || typeof key.agent !== "string") {
      throw new TypeError("bucket JSON needs key.version, key.tenant and key.agent strings");
    }
    if (j.counters === undefined || typeof j.counters !== "object" || typeof j.counters.calls !== "number") throw new TypeError("bucket JSON needs counters");
    const bucket = new Bucket({ version: key.version, tenant: key.tenant, agent: key.agent }, options);
    for (const k of COUNTER_KEYS) {
      const v = (j.counters as unknown as Record<string, unknown>)[k];
      if (typeof v === "number" || (v === null && (k === "firstStartedAt" || k === "lastEndedAt"))) (bucket.counters as unknown as Record<string, unknown>)[k] = v;
    }
    for (const [name, s] of Object.entries(j.sketches ?? {})) bucket.sketches.set(name, DDSketch.fromJSON(s));
    for (const [name, r] of Object.entries(j.reservoirs ?? {})) bucket.reservoirs.set(name, Reservoir.fromJSON(r, options.random));
    return bucket;
  }

  /** Approximate retained size in bytes (the JSON form), for the memory-per-bucket figure. */
  approximateBytes(): number {
    return Buffer.byteLength(JSON.stringify(this.toJSON()));
  }
}
