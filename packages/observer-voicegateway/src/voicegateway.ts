/**
 * voicegateway's ingest format, so a TypeScript fleet and a Python fleet land in the same
 * voicegateway. Read from mahimailabs/voicegateway (src/voicegateway/server/api/ingest.py,
 * services/sinks.py `RemoteCollectorSink`, models/request_model.py `RequestRecord`,
 * middleware/turn_tracker_middleware.py `TurnRow`, inference/session/capture.py):
 *
 * - `POST {VOICEGW_COLLECTOR_URL}/v1/ingest`, `Authorization: Bearer <ingest key>`, body a JSON
 *   array of `RequestRecord` objects (dataclass field names, snake_case). Unknown keys are
 *   ignored; a record missing a required field is skipped, not the batch. Answer 200
 *   `{"accepted": n, "duplicates": n}`; `id` is the dedup key, so a retried batch is not
 *   double-counted. 429 with `Retry-After` is backpressure; 413 means the batch is over the
 *   collector's `max_batch_size`; 503 means its store is down (retry).
 * - `POST …/v1/ingest/turns`, same auth, body a JSON array of `TurnRow` objects.
 * - The tenant is stamped server-side from the key; the per-call tenant rides in
 *   `metadata.tenant_id` (as voicegateway's own capture does), the version in `revision`
 *   ("opaque: a semver string and a deploy id are all valid… it only groups by it"), the agent
 *   in `agent_id`, the job in `session_id`.
 * Units follow voicegateway: LLM tokens, STT audio minutes, TTS characters; latencies in ms;
 * `timestamp` in Unix seconds; end-of-utterance rows are `modality: "eou"` with
 * `metadata.eou.end_of_utterance_delay` / `transcription_delay` in seconds.
 */
import { randomUUID } from "node:crypto";
import type { CallRecord } from "./call.ts";
import { PRICING_SOURCE } from "./pricing.ts";

/** The `RequestRecord` dataclass, field for field. */
export interface VoiceGatewayRequestRecord {
  id: string;
  timestamp: number;
  modality: string;
  model_id: string;
  provider: string;
  project: string;
  input_units: number;
  output_units: number;
  cached_input_units: number;
  cost_usd: number;
  pricing_source: string;
  ttfb_ms: number | null;
  total_latency_ms: number | null;
  status: string;
  fallback_from: string | null;
  error_message: string | null;
  metadata: Record<string, unknown>;
  session_id: string | null;
  agent_id: string | null;
  revision: string | null;
  turn_index: number | null;
  rated_price_usd: number;
  rate_rule: string;
}

/** The `TurnRow` dataclass, field for field. */
export interface VoiceGatewayTurnRow {
  session_id: string;
  turn_index: number;
  caller_speak_start_ms: number;
  caller_speak_end_ms: number;
  agent_speak_start_ms: number | null;
  agent_speak_end_ms: number | null;
  response_speed_ms: number | null;
}

export const REQUEST_RECORD_REQUIRED = ["id", "timestamp", "modality", "model_id", "provider"] as const;

/** voicegateway's `VOICEGW_COLLECTOR_URL` is the base host; accept a full `/v1/ingest` URL too (as it does). */
export function ingestUrl(collectorUrl: string): string {
  const trimmed = collectorUrl.replace(/\/+$/, "");
  return trimmed.endsWith("/v1/ingest") ? trimmed : `${trimmed}/v1/ingest`;
}

export interface ToRecordsOptions {
  project?: string;
  /** Makes ids deterministic in tests; default `crypto.randomUUID`. */
  newId?: () => string;
}

/** One call → voicegateway rows: one per provider request, one per EOU, one per error, a failure row. */
export function toRequestRecords(call: CallRecord, options: ToRecordsOptions = {}): VoiceGatewayRequestRecord[] {
  const project = options.project ?? "default";
  const newId = options.newId ?? randomUUID;
  const openrtc = {
    deployment_version: call.deploymentVersion,
    tenant: call.tenant,
    job_id: call.jobId,
    outcome: call.status,
    duration_seconds: call.durationSeconds,
  };
  const base = (modality: string, timestamp: number): VoiceGatewayRequestRecord => ({
    id: newId(),
    timestamp,
    modality,
    model_id: "",
    provider: "",
    project,
    input_units: 0,
    output_units: 0,
    cached_input_units: 0,
    cost_usd: 0,
    pricing_source: PRICING_SOURCE,
    ttfb_ms: null,
    total_latency_ms: null,
    status: "success",
    fallback_from: null,
    error_message: null,
    metadata: { tenant_id: call.tenant, room: call.roomName, openrtc },
    session_id: call.jobId,
    agent_id: call.agentName,
    revision: call.deploymentVersion,
    turn_index: null,
    rated_price_usd: 0,
    rate_rule: "",
  });
  const rows: VoiceGatewayRequestRecord[] = [];
  for (const r of call.requests) {
    const row = base(r.modality, r.timestamp);
    if (r.modality === "eou") {
      row.metadata = { ...row.metadata, eou: { end_of_utterance_delay: (r.eou?.endOfUtteranceDelayMs ?? 0) / 1000, transcription_delay: (r.eou?.transcriptionDelayMs ?? 0) / 1000 } };
    } else {
      row.provider = r.provider;
      row.model_id = r.model === "unknown" ? r.provider : `${r.provider}/${r.model}`;
      row.input_units = r.inputUnits;
      row.output_units = r.outputUnits;
      row.cached_input_units = r.cachedInputUnits;
      row.cost_usd = r.costUsd;
      row.rated_price_usd = r.costUsd;
      row.ttfb_ms = r.ttfbMs;
      row.total_latency_ms = r.totalLatencyMs;
      row.status = r.cancelled ? "cancelled" : "success";
    }
    rows.push(row);
  }
  for (const e of call.errors) {
    const row = base(/stt/i.test(e.source) ? "stt" : /tts/i.test(e.source) ? "tts" : "llm", e.at);
    row.status = "error";
    row.provider = e.source;
    row.model_id = e.source;
    row.error_message = e.message;
    row.metadata = { ...row.metadata, recoverable: e.recoverable };
    rows.push(row);
  }
  if (call.status !== "success") {
    // voicegateway has no per-call outcome row; this one carries it so its error views show the call.
    const row = base("session", call.endedAt);
    row.status = "error";
    row.error_message = call.error ?? `call ended ${call.status}`;
    rows.push(row);
  }
  return rows;
}

export function toTurnRows(call: CallRecord): VoiceGatewayTurnRow[] {
  const rows: VoiceGatewayTurnRow[] = [];
  for (const t of call.turnDetail) {
    // TurnRow requires the caller's speaking interval: a greeting (no user turn) has none.
    if (t.callerSpeakStartMs === null) continue;
    rows.push({
      session_id: call.jobId,
      turn_index: t.index,
      caller_speak_start_ms: t.callerSpeakStartMs,
      caller_speak_end_ms: t.callerSpeakEndMs ?? t.agentSpeakStartMs ?? t.callerSpeakStartMs,
      agent_speak_start_ms: t.agentSpeakStartMs,
      agent_speak_end_ms: t.agentSpeakEndMs,
      response_speed_ms: t.e2eLatencyMs,
    });
  }
  return rows;
}

/** What the collector-side check enforces (used by the in-process collector and the tests). */
export function validateRequestRecord(value: unknown): string | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "not an object";
  const r = value as Record<string, unknown>;
  for (const k of REQUEST_RECORD_REQUIRED) if (!(k in r)) return `missing ${k}`;
  if (typeof r["id"] !== "string" || r["id"] === "") return "id must be a non-empty string";
  if (typeof r["timestamp"] !== "number") return "timestamp must be a number (Unix seconds)";
  for (const k of ["modality", "model_id", "provider"]) if (typeof r[k] !== "string") return `${k} must be a string`;
  for (const k of ["input_units", "output_units", "cached_input_units", "cost_usd", "rated_price_usd"]) if (k in r && typeof r[k] !== "number") return `${k} must be a number`;
  for (const k of ["ttfb_ms", "total_latency_ms"]) if (k in r && r[k] !== null && typeof r[k] !== "number") return `${k} must be a number or null`;
  if ("metadata" in r && (r["metadata"] === null || typeof r["metadata"] !== "object")) return "metadata must be an object";
  return null;
}

export function validateTurnRow(value: unknown): string | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "not an object";
  const r = value as Record<string, unknown>;
  if (typeof r["session_id"] !== "string") return "session_id must be a string";
  for (const k of ["turn_index", "caller_speak_start_ms", "caller_speak_end_ms"]) if (!Number.isInteger(r[k])) return `${k} must be an integer`;
  for (const k of ["agent_speak_start_ms", "agent_speak_end_ms", "response_speed_ms"]) if (k in r && r[k] !== null && !Number.isInteger(r[k])) return `${k} must be an integer or null`;
  return null;
}
