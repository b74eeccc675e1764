import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { SESSION_STATUSES, type SessionStatus } from "./sessions.ts";

/** The tenant label every tenant past the cap is folded into. */
export const OTHER_TENANT = "__other__";
export const DEFAULT_MAX_TENANT_LABELS = 100;

export const METRIC_NAMES = {
  workerInfo: "openrtc_worker_info",
  draining: "openrtc_draining",
  accepting: "openrtc_accepting",
  activeSessions: "openrtc_active_sessions",
  sessionsStarted: "openrtc_sessions_started_total",
  sessionsEnded: "openrtc_sessions_ended_total",
  sessionDuration: "openrtc_session_duration_seconds",
  jobsRejected: "openrtc_jobs_rejected_total",
  drainStuck: "openrtc_drain_stuck",
  droppedSessions: "openrtc_dropped_sessions_total",
  auditEvents: "openrtc_audit_events_total",
  auditSinkErrors: "openrtc_audit_sink_errors_total",
} as const;

/** Metrics beyond the contract list, added where a real need showed. */
export const EXTRA_METRIC_NAMES = {
  invalidTenants: "openrtc_invalid_tenants_total",
  listenerErrors: "openrtc_listener_errors_total",
  auditRecordsDropped: "openrtc_audit_records_dropped_total",
  auditQueueDepth: "openrtc_audit_queue_depth",
} as const;

/** The label an audit event type past the cap (or not shaped like one) is counted under. */
export const OTHER_EVENT = "__other__";
/** How many event types outside the core's own get a label of their own. */
const MAX_CUSTOM_EVENT_LABELS = 32;
const EVENT_NAME_RE = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;
// The core's own event types (the audit log's table plus those the pool writes), written out so
// the label set does not move with the audit module's internals.
const CORE_EVENTS = new Set<string>([
  "deployment.started",
  "deployment.completed",
  "deployment.drain_started",
  "deployment.drain_completed",
  "deployment.drain_stuck",
  "deployment.rolled_back",
  "worker.rejected",
  "worker.exited",
  "worker.membership_changed",
  "worker.manifest_rejected",
  "audit.checkpoint",
  "audit.reserved_event",
  "audit.records_dropped",
]);
const LISTENER_EVENTS = new Set(["state", "sessionStarted", "sessionEnded", "rejected", "membership", "drainStuck"]);

/** What the metrics read from the worker at scrape time. */
export interface WorkerStatusSource {
  readonly workerId: string;
  readonly deploymentVersion: string | null;
  readonly draining: boolean;
  readonly accepting: boolean;
  readonly drainStuck: boolean;
}

export interface MetricsOptions {
  /** Where to register. Default: a private registry; nothing is ever registered globally. */
  registry?: Registry;
  /**
   * How many distinct tenants get a label of their own. Labels are handed out first come,
   * and kept for the life of the process so counters stay monotonic; later tenants are counted
   * under `tenant="__other__"`. The snapshot keeps exact per-tenant counts.
   */
  maxTenantLabels?: number;
  /** Histogram buckets for call durations, in seconds. */
  durationBuckets?: number[];
}

/** Counters for one tenant label, updated on the hot path and read at scrape time. */
interface LabelCounts {
  live: number;
  started: number;
  ended: Record<SessionStatus, number>;
}

const DEFAULT_DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

/**
 * The worker's Prometheus metrics. Session counters are plain integers bumped on the hot path
 * and turned into samples only when scraped (prom-client's `collect`), so a call costs a few
 * increments, not a label hash per metric.
 */
export class PoolMetrics {
  readonly registry: Registry;
  private readonly maxTenantLabels: number;
  private readonly labelOf = new Map<string, LabelCounts>();
  private readonly counts = new Map<string, LabelCounts>();
  private ownLabels = 0;
  private readonly duration: Record<SessionStatus, { observe(value: number): void }>;
  private readonly rejected: Counter<"reason">;
  private readonly dropped: Counter;
  private readonly auditEvents: Counter<"event">;
  private readonly auditSinkErrors: Counter<"sink">;
  private readonly auditRecordsDropped: Counter<"sink">;
  /** Read at scrape time: the audit log's per-sink backlog (set by `trackAuditQueues`). */
  private auditQueues: (() => readonly { name: string; pending: number }[]) | undefined;
  private readonly invalidTenants: Counter;
  private readonly listenerErrors: Counter<"event">;
  private readonly customEvents = new Set<string>();

  constructor(source: WorkerStatusSource, options: MetricsOptions = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    const max = options.maxTenantLabels ?? DEFAULT_MAX_TENANT_LABELS;
    if (!Number.isInteger(max) || max < 1) {
      throw new TypeError(`metrics.maxTenantLabels must be a whole number ≥ 1, got ${String(max)}`);
    }
    this.maxTenantLabels = max;
    const registers = [registry];
    const counts = this.counts;

    new Gauge({
      name: METRIC_NAMES.workerInfo,
      help: "Always 1; labels identify the worker and the version it runs.",
      labelNames: ["deployment_version", "worker_id"],
      registers,
      collect() {
        this.reset();
        this.set({ deployment_version: source.deploymentVersion ?? "", worker_id: source.workerId }, 1);
      },
    });
    new Gauge({
      name: METRIC_NAMES.draining,
      help: "1 while the worker drains (rejects new jobs, lets live calls finish), else 0.",
      registers,
      collect() {
        this.set(source.draining ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC_NAMES.accepting,
      help: "1 while the worker accepts new jobs (not draining and a member of the active manifest).",
      registers,
      collect() {
        this.set(source.accepting ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC_NAMES.drainStuck,
      help: "1 when the drain timeout passed with calls still live; investigate, do not hard-kill.",
      registers,
      collect() {
        this.set(source.drainStuck ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC_NAMES.activeSessions,
      help: "Calls in flight on this worker, by tenant.",
      labelNames: ["tenant"],
      registers,
      collect() {
        this.reset();
        for (const [tenant, c] of counts) this.set({ tenant }, c.live);
      },
    });
    new Counter({
      name: METRIC_NAMES.sessionsStarted,
      help: "Calls started on this worker, by tenant.",
      labelNames: ["tenant"],
      registers,
      collect() {
        this.reset();
        for (const [tenant, c] of counts) this.inc({ tenant }, c.started);
      },
    });
    new Counter({
      name: METRIC_NAMES.sessionsEnded,
      help: "Calls ended on this worker, by tenant and outcome.",
      labelNames: ["tenant", "status"],
      registers,
      collect() {
        this.reset();
        for (const [tenant, c] of counts) {
          for (const status of SESSION_STATUSES) this.inc({ tenant, status }, c.ended[status]);
        }
      },
    });
    const histogram = new Histogram({
      name: METRIC_NAMES.sessionDuration,
      help: "Call duration in seconds, by outcome.",
      labelNames: ["status"],
      buckets: options.durationBuckets ?? DEFAULT_DURATION_BUCKETS,
      registers,
    });
    this.duration = {
      success: histogram.labels({ status: "success" }),
      failed: histogram.labels({ status: "failed" }),
      cancelled: histogram.labels({ status: "cancelled" }),
    };
    this.rejected = new Counter({
      name: METRIC_NAMES.jobsRejected,
      help: "Job requests this worker refused, by reason (draining, membership, invalid_metadata).",
      labelNames: ["reason"],
      registers,
    });
    this.dropped = new Counter({
      name: METRIC_NAMES.droppedSessions,
      help: "Calls still live when the worker was forced to exit. Must stay 0.",
      registers,
    });
    this.auditEvents = new Counter({
      name: METRIC_NAMES.auditEvents,
      help: "Audit events written, by event type.",
      labelNames: ["event"],
      registers,
    });
    this.auditSinkErrors = new Counter({
      name: METRIC_NAMES.auditSinkErrors,
      help: "Audit sink delivery failures (each retried or kept), by sink.",
      labelNames: ["sink"],
      registers,
    });
    this.auditRecordsDropped = new Counter({
      name: EXTRA_METRIC_NAMES.auditRecordsDropped,
      help: "Audit records a sink never received because its queue was full (each loss is also written as an audit.records_dropped record), by sink.",
      labelNames: ["sink"],
      registers,
    });
    const metrics = this;
    new Gauge({
      name: EXTRA_METRIC_NAMES.auditQueueDepth,
      help: "Audit records queued or in flight to a sink, not yet acknowledged, by sink. Near the audit log's maxQueue, records start being dropped.",
      labelNames: ["sink"],
      registers,
      collect() {
        this.reset();
        for (const q of metrics.auditQueues?.() ?? []) this.set({ sink: q.name }, q.pending);
      },
    });
    this.invalidTenants = new Counter({
      name: EXTRA_METRIC_NAMES.invalidTenants,
      help: 'Calls taken under tenant="invalid" because their metadata named a malformed tenant (tenantPolicy "label"). Fix the dispatcher.',
      registers,
    });
    this.listenerErrors = new Counter({
      name: EXTRA_METRIC_NAMES.listenerErrors,
      help: "Pool event listeners that threw or rejected (each was skipped; the worker carried on), by event.",
      labelNames: ["event"],
      registers,
    });
    this.invalidTenants.inc(0);
    for (const reason of ["draining", "membership"]) this.rejected.inc({ reason }, 0);
    this.dropped.inc(0);
  }

  private countsFor(tenant: string): LabelCounts {
    let c = this.labelOf.get(tenant);
    if (c !== undefined) return c;
    // Tenants cannot be named "__other__" (they start with a letter or digit), so no clash.
    let label = OTHER_TENANT;
    if (this.ownLabels < this.maxTenantLabels) {
      label = tenant;
      this.ownLabels++;
    }
    c = this.counts.get(label);
    if (c === undefined) {
      c = { live: 0, started: 0, ended: { success: 0, failed: 0, cancelled: 0 } };
      this.counts.set(label, c);
    }
    this.labelOf.set(tenant, c);
    return c;
  }

  sessionStarted(tenant: string): void {
    const c = this.countsFor(tenant);
    c.live++;
    c.started++;
  }

  sessionEnded(tenant: string, status: SessionStatus, durationSeconds: number): void {
    const c = this.countsFor(tenant);
    c.live--;
    c.ended[status]++;
    this.duration[status].observe(durationSeconds);
  }

  jobRejected(reason: string): void {
    this.rejected.inc({ reason });
  }

  sessionsDropped(count: number): void {
    if (count > 0) this.dropped.inc(count);
  }

  /**
   * `emit` takes any string as the event type, so the label is bounded: the core's own types,
   * then the first few custom ones shaped like `area.name`; anything else is `__other__`.
   */
  auditEvent(event: string): void {
    this.auditEvents.inc({ event: this.eventLabel(event) });
  }

  private eventLabel(event: string): string {
    if (CORE_EVENTS.has(event) || this.customEvents.has(event)) return event;
    if (this.customEvents.size < MAX_CUSTOM_EVENT_LABELS && event.length <= 64 && EVENT_NAME_RE.test(event)) {
      this.customEvents.add(event);
      return event;
    }
    return OTHER_EVENT;
  }

  invalidTenant(): void {
    this.invalidTenants.inc();
  }

  listenerError(event: string): void {
    this.listenerErrors.inc({ event: LISTENER_EVENTS.has(event) ? event : "other" });
  }

  auditSinkError(sink: string): void {
    this.auditSinkErrors.inc({ sink });
  }

  auditRecordsDroppedBy(sink: string, count: number): void {
    this.auditRecordsDropped.inc({ sink }, count);
  }

  /** Where the queue-depth gauge reads each sink's backlog at scrape time (e.g. `() => auditLog.stats().sinks`). */
  trackAuditQueues(source: () => readonly { name: string; pending: number }[]): void {
    this.auditQueues = source;
  }

  /** The exposition text, as served at `GET /metrics`. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }
}
