/**
 * One call's record, built in the job process from the live `AgentSession`'s events.
 *
 * Which @livekit/agents 1.9 events, and why (read from its dist code):
 * - `metrics_collected` on the session. `AgentActivity` subscribes to its STT, LLM, TTS, VAD,
 *   turn detector and realtime session and re-emits each of their `metrics_collected` events on
 *   the session (tagging LLM/TTS metrics with the speech id), and re-subscribes when the agent
 *   swaps a component. So the session event sees every component's metrics, including after
 *   `updateAgent`, which per-component listeners would miss. Metric types: `llm_metrics`,
 *   `stt_metrics`, `tts_metrics`, `eou_metrics`, `realtime_model_metrics` (plus `vad_metrics`,
 *   `eot_inference_metrics`, `interruption_metrics`, `avatar_metrics`, which we count only).
 * - `conversation_item_added`: the assistant `ChatMessage.metrics` carries `e2eLatency` (user
 *   stopped speaking → agent started speaking, seconds), the end-to-end turn latency, which no
 *   metrics event has; the user message carries its speaking times.
 * - `error`: provider errors (`recoverable` or not).
 * What 1.9 deprecates: `UsageCollector`/`UsageSummary` (in favour of `ModelUsageCollector` and
 * `session.usage` / `session_usage_updated`). We use neither: totals are summed from the same
 * metrics events, so a call's latency samples and its tokens can never disagree.
 * (The Python SDK ≥ 1.5 deprecates the session-level `metrics_collected`; 1.9 JS does not.)
 */
import type { SessionStatus } from "@openrtc/core";
import { llmCost, sttCost, ttsCost, type PricingTable } from "./pricing.ts";

export const CALL_RECORD_VERSION = 1;

/** One provider request, kept for voicegateway's per-request rows. */
export interface CallRequest {
  readonly modality: "llm" | "stt" | "tts" | "eou";
  readonly provider: string;
  readonly model: string;
  /** Unix seconds. */
  readonly timestamp: number;
  readonly inputUnits: number;
  readonly outputUnits: number;
  readonly cachedInputUnits: number;
  readonly costUsd: number;
  readonly ttfbMs: number | null;
  readonly totalLatencyMs: number | null;
  readonly cancelled: boolean;
  readonly requestId?: string;
  readonly speechId?: string;
  readonly eou?: { readonly endOfUtteranceDelayMs: number; readonly transcriptionDelayMs: number };
}

export interface CallTurn {
  readonly index: number;
  /** Unix ms, from the user/assistant ChatMessage metrics. */
  readonly callerSpeakStartMs: number | null;
  readonly callerSpeakEndMs: number | null;
  readonly agentSpeakStartMs: number | null;
  readonly agentSpeakEndMs: number | null;
  readonly e2eLatencyMs: number | null;
}

export interface CallError {
  readonly source: string;
  readonly message: string;
  readonly recoverable: boolean;
  readonly at: number;
}

export interface CallRecord {
  readonly v: typeof CALL_RECORD_VERSION;
  readonly jobId: string;
  readonly roomName: string;
  readonly agentName: string;
  readonly deploymentVersion: string;
  readonly tenant: string;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly durationSeconds: number;
  readonly status: SessionStatus;
  readonly error?: string;
  readonly turns: number;
  readonly llmTtftMs: readonly number[];
  readonly ttsTtfbMs: readonly number[];
  readonly eouDelayMs: readonly number[];
  readonly e2eLatencyMs: readonly number[];
  readonly promptTokens: number;
  readonly cachedPromptTokens: number;
  readonly completionTokens: number;
  readonly ttsCharacters: number;
  readonly sttAudioSeconds: number;
  readonly ttsAudioSeconds: number;
  readonly costUsd: number;
  readonly errors: readonly CallError[];
  /** Per-request detail for voicegateway; dropped (not shipped natively) beyond `maxRequests`. */
  readonly requests: readonly CallRequest[];
  readonly turnDetail: readonly CallTurn[];
  /** Requests not kept because the call exceeded `maxRequests` (their totals still count). */
  readonly requestsDropped: number;
}

export const UNTAGGED_VERSION = "untagged";

interface MetricsMetadata {
  modelProvider?: string;
  modelName?: string;
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

function providerOf(metric: Record<string, unknown>): { provider: string; model: string } {
  const meta = (metric["metadata"] ?? {}) as MetricsMetadata;
  const label = typeof metric["label"] === "string" ? metric["label"] : "";
  const provider = typeof meta.modelProvider === "string" && meta.modelProvider !== "" ? meta.modelProvider : label || "unknown";
  const model = typeof meta.modelName === "string" && meta.modelName !== "" ? meta.modelName : "unknown";
  return { provider, model };
}

export interface CallRecorderOptions {
  pricing: Required<PricingTable>;
  /** Bound on per-request detail kept per call (memory in a long call). Default 2000. */
  maxRequests?: number;
  /** Bound on latency samples kept per metric per call. Default 2000. */
  maxSamples?: number;
  now?: () => number;
}

export interface CallIdentity {
  jobId: string;
  roomName: string;
  agentName: string;
  deploymentVersion: string | null;
  tenant: string;
  startedAt: number;
}

/** Accumulates one call. Every method is total: malformed events are counted, never thrown. */
export class CallRecorder {
  readonly identity: CallIdentity;
  private readonly pricing: Required<PricingTable>;
  private readonly maxRequests: number;
  private readonly maxSamples: number;
  private readonly now: () => number;
  private readonly llmTtft: number[] = [];
  private readonly ttsTtfb: number[] = [];
  private readonly eouDelay: number[] = [];
  private readonly e2e: number[] = [];
  private readonly requests: CallRequest[] = [];
  private readonly turnDetail: CallTurn[] = [];
  private readonly errors: CallError[] = [];
  private requestsDropped = 0;
  private turns = 0;
  private promptTokens = 0;
  private cachedPromptTokens = 0;
  private completionTokens = 0;
  private ttsCharacters = 0;
  private sttAudioSeconds = 0;
  private ttsAudioSeconds = 0;
  private costUsd = 0;
  private pendingUser: { start: number | null; end: number | null } | undefined;
  /** Events we ignored (unknown metric types or malformed payloads). */
  ignored = 0;

  constructor(identity: CallIdentity, options: CallRecorderOptions) {
    this.identity = identity;
    this.pricing = options.pricing;
    this.maxRequests = options.maxRequests ?? 2000;
    this.maxSamples = options.maxSamples ?? 2000;
    this.now = options.now ?? (() => Date.now() / 1000);
  }

  /** Handles a `metrics_collected` event (`{ metrics }`) or a bare metrics object. */
  onMetrics(event: unknown): void {
    const metric = (event !== null && typeof event === "object" && "metrics" in event ? (event as { metrics: unknown }).metrics : event) as Record<string, unknown> | null;
    if (metric === null || typeof metric !== "object") {
      this.ignored++;
      return;
    }
    const timestamp = num(metric["timestamp"]) > 0 ? num(metric["timestamp"]) / 1000 : this.now();
    const cancelled = metric["cancelled"] === true;
    const requestId = typeof metric["requestId"] === "string" ? metric["requestId"] : undefined;
    const speechId = typeof metric["speechId"] === "string" ? metric["speechId"] : undefined;
    const ids = { ...(requestId === undefined ? {} : { requestId }), ...(speechId === undefined ? {} : { speechId }) };
    switch (metric["type"]) {
      case "llm_metrics":
      case "realtime_model_metrics": {
        const realtime = metric["type"] === "realtime_model_metrics";
        const { provider, model } = providerOf(metric);
        const prompt = num(realtime ? metric["inputTokens"] : metric["promptTokens"]);
        const completion = num(realtime ? metric["outputTokens"] : metric["completionTokens"]);
        const cached = realtime ? num((metric["inputTokenDetails"] as Record<string, unknown> | undefined)?.["cachedTokens"]) : num(metric["promptCachedTokens"]);
        const ttft = num(metric["ttftMs"]);
        // -1 (realtime: no audio token) and cancelled requests carry no latency sample.
        const hasTtft = typeof metric["ttftMs"] === "number" && ttft >= 0 && !cancelled;
        if (hasTtft) this.sample(this.llmTtft, ttft);
        const cost = llmCost(this.pricing, provider, model, prompt, cached, completion);
        this.promptTokens += prompt;
        this.cachedPromptTokens += cached;
        this.completionTokens += completion;
        this.costUsd += cost;
        this.request({ modality: "llm", provider, model, timestamp, inputUnits: prompt, outputUnits: completion, cachedInputUnits: cached, costUsd: cost, ttfbMs: hasTtft ? ttft : null, totalLatencyMs: num(metric["durationMs"]) || null, cancelled, ...ids });
        return;
      }
      case "tts_metrics": {
        const { provider, model } = providerOf(metric);
        const chars = num(metric["charactersCount"]);
        const ttfb = num(metric["ttfbMs"]);
        const hasTtfb = typeof metric["ttfbMs"] === "number" && ttfb >= 0 && !cancelled;
        if (hasTtfb) this.sample(this.ttsTtfb, ttfb);
        const cost = ttsCost(this.pricing, provider, model, chars);
        this.ttsCharacters += chars;
        this.ttsAudioSeconds += num(metric["audioDurationMs"]) / 1000;
        this.costUsd += cost;
        this.request({ modality: "tts", provider, model, timestamp, inputUnits: chars, outputUnits: 0, cachedInputUnits: 0, costUsd: cost, ttfbMs: hasTtfb ? ttfb : null, totalLatencyMs: num(metric["durationMs"]) || null, cancelled, ...ids });
        return;
      }
      case "stt_metrics": {
        const { provider, model } = providerOf(metric);
        const seconds = num(metric["audioDurationMs"]) / 1000;
        const cost = sttCost(this.pricing, provider, model, seconds);
        this.sttAudioSeconds += seconds;
        this.costUsd += cost;
        // voicegateway's unit for STT is audio minutes.
        this.request({ modality: "stt", provider, model, timestamp, inputUnits: seconds / 60, outputUnits: 0, cachedInputUnits: 0, costUsd: cost, ttfbMs: null, totalLatencyMs: num(metric["durationMs"]) || null, cancelled: false, ...ids });
        return;
      }
      case "eou_metrics": {
        const delay = num(metric["endOfUtteranceDelayMs"]);
        const transcription = num(metric["transcriptionDelayMs"]);
        // The SDK sets both to 0 when the end of speech was not detected: not a sample.
        if (delay > 0) this.sample(this.eouDelay, delay);
        this.request({ modality: "eou", provider: "", model: "", timestamp, inputUnits: 0, outputUnits: 0, cachedInputUnits: 0, costUsd: 0, ttfbMs: null, totalLatencyMs: null, cancelled: false, eou: { endOfUtteranceDelayMs: delay, transcriptionDelayMs: transcription }, ...ids });
        return;
      }
      default:
        this.ignored++;
    }
  }

  /** Handles `conversation_item_added` (`{ item: ChatMessage }`). */
  onConversationItem(event: unknown): void {
    const item = (event as { item?: unknown } | null)?.item as { type?: unknown; role?: unknown; metrics?: Record<string, unknown> } | undefined;
    if (item === undefined || item === null || item.type !== "message") return;
    const metrics = item.metrics ?? {};
    const ms = (key: string): number | null => (typeof metrics[key] === "number" && Number.isFinite(metrics[key]) ? Math.round((metrics[key] as number) * 1000) : null);
    if (item.role === "user") {
      this.pendingUser = { start: ms("startedSpeakingAt"), end: ms("stoppedSpeakingAt") };
      return;
    }
    if (item.role !== "assistant") return;
    this.turns++;
    const e2e = typeof metrics["e2eLatency"] === "number" && Number.isFinite(metrics["e2eLatency"]) && metrics["e2eLatency"] >= 0 ? metrics["e2eLatency"] * 1000 : null;
    if (e2e !== null) this.sample(this.e2e, e2e);
    if (this.turnDetail.length < this.maxRequests) {
      this.turnDetail.push({
        index: this.turns - 1,
        callerSpeakStartMs: this.pendingUser?.start ?? null,
        callerSpeakEndMs: this.pendingUser?.end ?? null,
        agentSpeakStartMs: ms("startedSpeakingAt"),
        agentSpeakEndMs: ms("stoppedSpeakingAt"),
        e2eLatencyMs: e2e === null ? null : Math.round(e2e),
      });
    }
    this.pendingUser = undefined;
  }

  /** Handles the session's `error` event. */
  onError(event: unknown): void {
    const ev = (event ?? {}) as { error?: unknown; source?: unknown };
    const error = (ev.error ?? {}) as { message?: unknown; recoverable?: unknown; error?: unknown; type?: unknown };
    const source = ev.source as { label?: unknown; constructor?: { name?: unknown } } | undefined;
    const label = typeof source?.label === "string" ? source.label : typeof source?.constructor?.name === "string" ? source.constructor.name : String(error.type ?? "unknown");
    const inner = error.error instanceof Error ? error.error.message : undefined;
    const message = typeof error.message === "string" ? error.message : inner ?? String(ev.error);
    if (this.errors.length < 100) this.errors.push({ source: label, message, recoverable: error.recoverable === true, at: this.now() });
  }

  finish(outcome: { status: SessionStatus; endedAt: number; durationSeconds: number; error?: string }): CallRecord {
    const id = this.identity;
    return {
      v: CALL_RECORD_VERSION,
      jobId: id.jobId,
      roomName: id.roomName,
      agentName: id.agentName,
      deploymentVersion: id.deploymentVersion ?? UNTAGGED_VERSION,
      tenant: id.tenant,
      startedAt: id.startedAt,
      endedAt: outcome.endedAt,
      durationSeconds: outcome.durationSeconds,
      status: outcome.status,
      ...(outcome.error === undefined ? {} : { error: outcome.error }),
      turns: this.turns,
      llmTtftMs: [...this.llmTtft],
      ttsTtfbMs: [...this.ttsTtfb],
      eouDelayMs: [...this.eouDelay],
      e2eLatencyMs: [...this.e2e],
      promptTokens: this.promptTokens,
      cachedPromptTokens: this.cachedPromptTokens,
      completionTokens: this.completionTokens,
      ttsCharacters: this.ttsCharacters,
      sttAudioSeconds: this.sttAudioSeconds,
      ttsAudioSeconds: this.ttsAudioSeconds,
      costUsd: this.costUsd,
      errors: [...this.errors],
      requests: [...this.requests],
      turnDetail: [...this.turnDetail],
      requestsDropped: this.requestsDropped,
    };
  }

  private sample(into: number[], value: number): void {
    if (into.length < this.maxSamples) into.push(value);
  }

  private request(request: CallRequest): void {
    if (this.requests.length < this.maxRequests) this.requests.push(request);
    else this.requestsDropped++;
  }
}

/** Checks the shape of a CallRecord received over the wire (the collector's native endpoint). */
export function isCallRecord(value: unknown): value is CallRecord {
  if (value === null || typeof value !== "object") return false;
  const r = value as Record<string, unknown>;
  const arrays = ["llmTtftMs", "ttsTtfbMs", "eouDelayMs", "e2eLatencyMs"];
  return (
    r["v"] === CALL_RECORD_VERSION &&
    typeof r["deploymentVersion"] === "string" &&
    typeof r["tenant"] === "string" &&
    typeof r["agentName"] === "string" &&
    typeof r["jobId"] === "string" &&
    (r["status"] === "success" || r["status"] === "failed" || r["status"] === "cancelled") &&
    typeof r["durationSeconds"] === "number" &&
    typeof r["costUsd"] === "number" &&
    arrays.every((k) => Array.isArray(r[k]) && (r[k] as unknown[]).every((x) => typeof x === "number" && Number.isFinite(x)))
  );
}
