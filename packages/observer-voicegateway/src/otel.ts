/**
 * The same per-call figures as OpenTelemetry metrics, through `@opentelemetry/api` only (the app
 * decides whether an SDK and an exporter exist; without one these calls are no-ops).
 *
 * Attributes: `openrtc.deployment_version`, `openrtc.tenant`, `openrtc.agent_name` (the names the
 * session span uses), plus `status` on calls and `kind` on tokens. Tenants beyond `maxTenants`
 * are reported as "other" so a metrics backend never sees unbounded cardinality.
 */
import { metrics, type Attributes, type Counter, type Histogram, type Meter } from "@opentelemetry/api";
import type { CallRecord } from "./call.ts";
import type { ShipperEvent } from "./shipper.ts";

export const METER_NAME = "@openrtc/observer-voicegateway";

export const OTEL_METRIC_NAMES = {
  calls: "openrtc.calls",
  callDuration: "openrtc.call.duration",
  e2eLatency: "openrtc.turn.e2e_latency",
  llmTtft: "openrtc.llm.ttft",
  ttsTtfb: "openrtc.tts.ttfb",
  eouDelay: "openrtc.eou.delay",
  tokens: "openrtc.llm.tokens",
  cost: "openrtc.call.cost",
  shipped: "openrtc.voicegateway.rows_sent",
  dropped: "openrtc.voicegateway.rows_dropped",
} as const;

export interface ObserverMetricsOptions {
  meter?: Meter;
  maxTenants?: number;
}

export class ObserverMetrics {
  private readonly calls: Counter;
  private readonly duration: Histogram;
  private readonly e2e: Histogram;
  private readonly ttft: Histogram;
  private readonly ttfb: Histogram;
  private readonly eou: Histogram;
  private readonly tokens: Counter;
  private readonly cost: Counter;
  private readonly shipped: Counter;
  private readonly dropped: Counter;
  private readonly tenants = new Set<string>();
  private readonly maxTenants: number;

  constructor(options: ObserverMetricsOptions = {}) {
    const meter = options.meter ?? metrics.getMeter(METER_NAME);
    this.maxTenants = options.maxTenants ?? 100;
    this.calls = meter.createCounter(OTEL_METRIC_NAMES.calls, { description: "Calls observed, by outcome" });
    this.duration = meter.createHistogram(OTEL_METRIC_NAMES.callDuration, { unit: "s", description: "Call duration" });
    this.e2e = meter.createHistogram(OTEL_METRIC_NAMES.e2eLatency, { unit: "ms", description: "User stopped speaking → agent started speaking" });
    this.ttft = meter.createHistogram(OTEL_METRIC_NAMES.llmTtft, { unit: "ms", description: "LLM time to first token" });
    this.ttfb = meter.createHistogram(OTEL_METRIC_NAMES.ttsTtfb, { unit: "ms", description: "TTS time to first byte" });
    this.eou = meter.createHistogram(OTEL_METRIC_NAMES.eouDelay, { unit: "ms", description: "End-of-utterance delay" });
    this.tokens = meter.createCounter(OTEL_METRIC_NAMES.tokens, { description: "LLM tokens" });
    this.cost = meter.createCounter(OTEL_METRIC_NAMES.cost, { unit: "USD", description: "Call cost from the pricing table" });
    this.shipped = meter.createCounter(OTEL_METRIC_NAMES.shipped, { description: "Rows delivered to the collector" });
    this.dropped = meter.createCounter(OTEL_METRIC_NAMES.dropped, { description: "Rows dropped (buffer full or refused by the collector)" });
  }

  recordCall(call: CallRecord): void {
    let tenant = call.tenant;
    if (!this.tenants.has(tenant)) {
      if (this.tenants.size >= this.maxTenants) tenant = "other";
      else this.tenants.add(tenant);
    }
    const attrs: Attributes = { "openrtc.deployment_version": call.deploymentVersion, "openrtc.tenant": tenant, "openrtc.agent_name": call.agentName };
    this.calls.add(1, { ...attrs, status: call.status });
    this.duration.record(call.durationSeconds, attrs);
    for (const v of call.e2eLatencyMs) this.e2e.record(v, attrs);
    for (const v of call.llmTtftMs) this.ttft.record(v, attrs);
    for (const v of call.ttsTtfbMs) this.ttfb.record(v, attrs);
    for (const v of call.eouDelayMs) this.eou.record(v, attrs);
    if (call.promptTokens > 0) this.tokens.add(call.promptTokens, { ...attrs, kind: "prompt" });
    if (call.completionTokens > 0) this.tokens.add(call.completionTokens, { ...attrs, kind: "completion" });
    if (call.costUsd > 0) this.cost.add(call.costUsd, attrs);
  }

  recordShipper(endpoint: string, event: ShipperEvent): void {
    if (event.type === "sent") this.shipped.add(event.rows, { endpoint });
    else if (event.type === "dropped") this.dropped.add(event.rows, { endpoint, reason: event.reason });
  }
}
