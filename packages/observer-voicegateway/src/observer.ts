/**
 * `VoiceGatewayObserver`: the session observer. It runs in the job process, next to the live
 * `AgentSession` (core's `openrtcAgent(..., { observers })` / `observeSession(ctx, session)`).
 *
 * On start it tags the call (deployment_version, tenant, agent) and subscribes to the session's
 * events; on end it closes the record and hands it to the in-memory store, the OTel instruments
 * and the shippers. Nothing here can touch the call: every handler catches its own errors
 * (counted, logged once), shipping is a synchronous enqueue into a bounded buffer, and the only
 * wait is an optional bounded flush in `onSessionEnd`, after the caller has hung up, because
 * the job process exits right after its shutdown callbacks and would take unsent rows with it.
 */
import { stderrLogger, type Logger, type SessionInfo, type SessionOutcome } from "@openrtc/core";
import type { SessionObserver } from "@openrtc/core/livekit";
import { CallRecorder, type CallRecord } from "./call.ts";
import { ObserverMetrics, type ObserverMetricsOptions } from "./otel.ts";
import { resolvePricing, type PricingTable } from "./pricing.ts";
import { HttpBatchShipper, type ShipperOptions, type ShipperStats } from "./shipper.ts";
import { InMemoryStore } from "./store.ts";
import { ingestUrl, toRequestRecords, toTurnRows } from "./voicegateway.ts";

export const COLLECTOR_URL_ENV = "VOICEGW_COLLECTOR_URL";
export const API_KEY_ENV = "VOICEGW_API_KEY";
/** Older voicegateway docs name the ingest key this way; read as a fallback. */
export const VIRTUAL_KEY_ENV = "VOICEGW_VIRTUAL_KEY";
export const OPENRTC_COLLECTOR_URL_ENV = "OPENRTC_OBSERVER_COLLECTOR_URL";
export const OPENRTC_COLLECTOR_TOKEN_ENV = "OPENRTC_OBSERVER_COLLECTOR_TOKEN";
export const CALLS_PATH = "/v1/openrtc/calls";

export interface VoiceGatewayObserverOptions {
  /** voicegateway project the rows are tagged with. Default "default". */
  project?: string;
  /** voicegateway collector base URL (default `$VOICEGW_COLLECTOR_URL`); `null` disables. */
  collectorUrl?: string | null;
  /** voicegateway ingest key, sent as the bearer token (default `$VOICEGW_API_KEY`). */
  apiKey?: string;
  /**
   * An OpenRTC collector (see `createCollectorServer`) that receives whole call records and keeps
   * the buckets `compare` reads (default `$OPENRTC_OBSERVER_COLLECTOR_URL`); `null` disables.
   */
  openrtcCollectorUrl?: string | null;
  openrtcCollectorToken?: string;
  /**
   * Where buckets are kept in this process. Default: a new `InMemoryStore` when no collector is
   * configured (so `compare(observer.store, ...)` works in one process), else none.
   */
  store?: InMemoryStore | null;
  pricing?: PricingTable;
  /** OTel metrics through `@opentelemetry/api`; `false` disables. Default on (no-op without an SDK). */
  otel?: boolean | ObserverMetricsOptions;
  shipper?: Omit<ShipperOptions, "headers" | "logger" | "onEvent">;
  /** Bound on the flush `onSessionEnd` waits for (keep it under core's observer timeout, 2000 ms). Default 1000. */
  endFlushTimeoutMs?: number;
  logger?: Logger;
  env?: Readonly<Record<string, string | undefined>>;
  /** Unix seconds clock (tests). */
  now?: () => number;
  /** Called with each finished record (after the store, before shipping); errors are isolated. */
  onCall?: (call: CallRecord) => void;
}

export interface ObserverStats {
  readonly active: number;
  readonly calls: number;
  readonly errors: number;
  readonly shippers: readonly ShipperStats[];
}

interface Active {
  recorder: CallRecorder;
  session: { off?: (event: string, fn: (...args: unknown[]) => void) => unknown } | null;
  listeners: [string, (...args: unknown[]) => void][];
}

const SESSION_EVENTS = ["metrics_collected", "conversation_item_added", "error"] as const;

export class VoiceGatewayObserver implements SessionObserver {
  readonly name = "voicegateway";
  readonly store: InMemoryStore | null;
  private readonly project: string;
  private readonly pricing: ReturnType<typeof resolvePricing>;
  private readonly logger: Logger;
  private readonly metrics: ObserverMetrics | null;
  private readonly requests: HttpBatchShipper | null;
  private readonly turns: HttpBatchShipper | null;
  private readonly calls: HttpBatchShipper | null;
  private readonly endFlushTimeoutMs: number;
  private readonly now: () => number;
  private readonly onCall: ((call: CallRecord) => void) | undefined;
  private readonly active = new Map<string, Active>();
  private readonly logged = new Set<string>();
  private callCount = 0;
  private errorCount = 0;

  constructor(options: VoiceGatewayObserverOptions = {}) {
    const env = options.env ?? process.env;
    this.project = options.project ?? "default";
    this.pricing = resolvePricing(options.pricing);
    this.logger = options.logger ?? stderrLogger;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.onCall = options.onCall;
    this.endFlushTimeoutMs = options.endFlushTimeoutMs ?? 1000;
    this.metrics = options.otel === false ? null : new ObserverMetrics(options.otel === true || options.otel === undefined ? {} : options.otel);
    const shipperBase = { ...options.shipper, logger: this.logger };
    const onEvent = (endpoint: string) => (event: Parameters<NonNullable<ShipperOptions["onEvent"]>>[0]) => this.isolate("otel", () => this.metrics?.recordShipper(endpoint, event));

    const collectorUrl = options.collectorUrl === null ? undefined : options.collectorUrl ?? (env[COLLECTOR_URL_ENV] || undefined);
    const apiKey = options.apiKey ?? (env[API_KEY_ENV] || env[VIRTUAL_KEY_ENV] || undefined);
    const auth = (token: string | undefined): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});
    if (collectorUrl !== undefined) {
      const url = ingestUrl(collectorUrl);
      this.requests = new HttpBatchShipper(url, { ...shipperBase, headers: auth(apiKey), onEvent: onEvent("ingest") });
      this.turns = new HttpBatchShipper(`${url}/turns`, { ...shipperBase, headers: auth(apiKey), onEvent: onEvent("ingest/turns") });
    } else {
      this.requests = null;
      this.turns = null;
    }
    const openrtcUrl = options.openrtcCollectorUrl === null ? undefined : options.openrtcCollectorUrl ?? (env[OPENRTC_COLLECTOR_URL_ENV] || undefined);
    this.calls = openrtcUrl === undefined ? null : new HttpBatchShipper(`${openrtcUrl.replace(/\/+$/, "")}${CALLS_PATH}`, { ...shipperBase, headers: auth(options.openrtcCollectorToken ?? env[OPENRTC_COLLECTOR_TOKEN_ENV]), onEvent: onEvent("openrtc") });
    this.store = options.store !== undefined ? options.store : collectorUrl === undefined && openrtcUrl === undefined ? new InMemoryStore() : null;
  }

  onSessionStart(info: SessionInfo, session: unknown): void {
    this.isolate("start", () => {
      const recorder = new CallRecorder(
        { jobId: info.jobId, roomName: info.roomName, agentName: info.agentName, deploymentVersion: info.deploymentVersion, tenant: info.tenant, startedAt: info.startedAt },
        { pricing: this.pricing, now: this.now },
      );
      const active: Active = { recorder, session: null, listeners: [] };
      this.active.set(info.jobId, active);
      const s = session as { on?: (event: string, fn: (...args: unknown[]) => void) => unknown } | null;
      if (s === null || typeof s?.on !== "function") return;
      active.session = s as Active["session"];
      const handlers: Record<(typeof SESSION_EVENTS)[number], (ev: unknown) => void> = {
        metrics_collected: (ev) => recorder.onMetrics(ev),
        conversation_item_added: (ev) => recorder.onConversationItem(ev),
        error: (ev) => recorder.onError(ev),
      };
      for (const event of SESSION_EVENTS) {
        // An exception in our listener would otherwise propagate into the SDK's emit() call.
        const fn = (ev: unknown): void => this.isolate(`event:${event}`, () => handlers[event](ev));
        s.on(event, fn);
        active.listeners.push([event, fn as (...args: unknown[]) => void]);
      }
    });
  }

  async onSessionEnd(info: SessionInfo, outcome: SessionOutcome): Promise<void> {
    let record: CallRecord | undefined;
    this.isolate("end", () => {
      let active = this.active.get(info.jobId);
      this.active.delete(info.jobId);
      if (active === undefined) {
        // onSessionStart failed or never ran: still count the call and its outcome.
        active = { recorder: new CallRecorder({ ...info, startedAt: info.startedAt }, { pricing: this.pricing, now: this.now }), session: null, listeners: [] };
      }
      for (const [event, fn] of active.listeners) this.isolate("off", () => active.session?.off?.(event, fn));
      record = active.recorder.finish({ status: outcome.status, endedAt: outcome.endedAt, durationSeconds: outcome.durationSeconds, ...(outcome.error === undefined ? {} : { error: outcome.error }) });
      this.callCount++;
    });
    if (record === undefined) return;
    const call = record;
    this.isolate("store", () => this.store?.record(call));
    this.isolate("otel", () => this.metrics?.recordCall(call));
    if (this.onCall !== undefined) this.isolate("onCall", () => this.onCall?.(call));
    this.isolate("ship", () => {
      this.requests?.push(toRequestRecords(call, { project: this.project }));
      this.turns?.push(toTurnRows(call));
      this.calls?.push([{ ...call, requests: [], turnDetail: [] }]);
    });
    if (this.endFlushTimeoutMs > 0) await this.flush(this.endFlushTimeoutMs);
  }

  /** Sends everything buffered, bounded by `timeoutMs`; never rejects. */
  async flush(timeoutMs = 5000): Promise<ObserverStats> {
    await Promise.all(this.shippers().map((s) => s.flush(timeoutMs).catch(() => undefined)));
    return this.stats();
  }

  async close(timeoutMs = 5000): Promise<ObserverStats> {
    await Promise.all(this.shippers().map((s) => s.close(timeoutMs).catch(() => undefined)));
    return this.stats();
  }

  stats(): ObserverStats {
    return { active: this.active.size, calls: this.callCount, errors: this.errorCount, shippers: this.shippers().map((s) => s.stats()) };
  }

  private shippers(): HttpBatchShipper[] {
    return [this.requests, this.turns, this.calls].filter((s): s is HttpBatchShipper => s !== null);
  }

  private isolate(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.errorCount++;
      if (this.logged.has(what)) return;
      this.logged.add(what);
      try {
        this.logger.warn({ observer: this.name, step: what, err: error instanceof Error ? error.message : String(error) }, "observer-voicegateway: a step failed; the call is unaffected (logged once per step)");
      } catch {
        // nothing left to do
      }
    }
  }
}
