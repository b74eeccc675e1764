import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { INVALID_SPAN_CONTEXT, trace, type Span, type Tracer } from "@opentelemetry/api";
import { AuditEventType, AuditLog, type AuditLogOptions, type AuditSink } from "./audit/log.ts";
import { systemClock, type Clock } from "./clock.ts";
import {
  canTransition,
  isDrainingState,
  JobRejectedError,
  stateAccepts,
  type DrainOptions,
  type PoolState,
  type RejectReason,
} from "./drain.ts";
import { describeError, isolated, safeLogger } from "./isolation.ts";
import { stderrLogger, type Logger } from "./logger.ts";
import { MANIFEST_REJECTED_EVENT, type ManifestRejection, type MembershipGate } from "./manifest.ts";
import { PoolMetrics, type MetricsOptions, type WorkerStatusSource } from "./metrics.ts";
import {
  errorMessage,
  SessionRegistry,
  type LiveSessionView,
  type SessionEnd,
  type SessionInfo,
  type SessionOutcome,
  type SessionStatus,
} from "./sessions.ts";
import { RuntimeSnapshot } from "./snapshot.ts";
import { InvalidMetadataError, parseMetadata, type TenantPolicy } from "./tenant.ts";
import { SessionTracer } from "./tracing.ts";

export type { MembershipGate };

export interface AgentPoolOptions {
  /** The version this worker runs, e.g. "v2.0.0". Trimmed; blank is an error; omit for untagged. */
  deploymentVersion?: string;
  /** Stable id of this worker; an integration may replace it on registration (`markReady`). */
  workerId?: string;
  /**
   * How long a drain may take before it is marked stuck. Passing it kills nothing: calls keep
   * running and an operator is told (snapshot, metric, audit event). Default: 1 hour.
   */
  drainTimeoutMs?: number;
  /**
   * The audit log's options: sinks, a fixed `origin` (its chain then resumes across restarts from
   * any sink that can tell its last record: file, S3), `checkpoint` keys or an external signer,
   * `resumeFrom`, `maxQueue`, `writeTimeoutMs`, `retry`. `clock` and `version` come from the pool;
   * `hooks` run after the pool's own (metrics, logging).
   */
  audit?: Omit<AuditLogOptions, "clock" | "version">;
  /** Shorthand for `audit.sinks` (both given: `audit.sinks` wins). */
  auditSinks?: readonly AuditSink[];
  /** Shorthand for `audit.origin`: the audit chain's origin id; default: derived from host, pid and a random part. */
  auditOrigin?: string;
  /** Gate on the active manifest: a worker whose version is not active stops accepting jobs. */
  membership?: MembershipGate;
  /**
   * What to do with a job whose metadata names a malformed tenant. `"reject"` (default, as
   * openrtc-python): refuse the call (`worker.rejected`, reason `invalid_metadata`). `"label"`:
   * take the call under `tenant="invalid"`, keep the raw value in `info.invalidTenant`, and count
   * it in `openrtc_invalid_tenants_total`.
   */
  tenantPolicy?: TenantPolicy;
  clock?: Clock;
  metrics?: MetricsOptions;
  tracer?: Tracer;
  logger?: Logger;
}

export interface StartSessionOptions {
  jobId: string;
  agentName?: string;
  roomName?: string;
  /** The LiveKit job metadata: a JSON string or an object. `tenant` is read from it. */
  metadata?: unknown;
}

export interface CloseOptions extends DrainOptions {
  /**
   * Close even though calls are live. Those calls are dropped: each ends as `failed`, and the
   * count is recorded (`openrtc_dropped_sessions_total`, a `worker.exited` audit event).
   */
  dropLiveSessions?: boolean;
  /** Bound on waiting for audit sinks to acknowledge. Default 5 s. */
  auditFlushTimeoutMs?: number;
}

export interface CloseResult {
  droppedSessions: number;
}

/**
 * The pool's events. Each is delivered after the state change that caused it is complete (the
 * audit record written, the counters updated), and each listener is isolated: one that throws
 * or rejects is logged and counted (`openrtc_listener_errors_total{event}`) and never reaches
 * the state machine or the caller.
 */
export interface PoolEvents {
  state: [state: PoolState, previous: PoolState];
  sessionStarted: [info: SessionInfo];
  sessionEnded: [info: SessionInfo, outcome: SessionOutcome];
  rejected: [error: JobRejectedError];
  membership: [member: boolean];
  drainStuck: [live: LiveSessionView[]];
}

type PoolEventName = keyof PoolEvents;
type QueuedEvent = { [K in PoolEventName]: { name: K; args: PoolEvents[K] } }[PoolEventName];

const DEFAULT_DRAIN_TIMEOUT_MS = 60 * 60 * 1000;
/** Longest accepted deploymentVersion; it becomes a metric label, an audit field and a LiveKit attribute. */
export const MAX_VERSION_LENGTH = 128;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A live call held by the pool. `end()` is idempotent. */
export class Session {
  private outcomeValue: SessionOutcome | undefined;

  /** @internal */
  constructor(
    readonly info: SessionInfo,
    /** @internal */ readonly span: Span,
    private readonly pool: AgentPool,
  ) {}

  get ended(): boolean {
    return this.outcomeValue !== undefined;
  }

  get outcome(): SessionOutcome | undefined {
    return this.outcomeValue;
  }

  /** Ends the call. Returns false when it had already ended (counted once). */
  end(end: SessionEnd = { status: "success" }): boolean {
    if (this.outcomeValue !== undefined) return false;
    this.outcomeValue = this.pool._end(this, end);
    return true;
  }
}

// Pools whose version and gate an integration has read (the LiveKit binding copies the version
// into job processes' environment and the participant attributes): `adopt` must refuse then.
const settledPools = new WeakMap<AgentPool, string>();

/**
 * Marks the pool's version and membership gate as read by `by` (the LiveKit binding does this
 * when it binds): `AgentPool.adopt` refuses from then on, so nothing can change them under it.
 */
export function settlePoolSettings(pool: AgentPool, by: string): void {
  if (!settledPools.has(pool)) settledPools.set(pool, by);
}

/**
 * One worker's drain, sessions, membership, audit log and metrics. Platform-agnostic: an
 * integration (LiveKit, Kubernetes, systemd) drives it through this API.
 */
export class AgentPool extends EventEmitter<PoolEvents> implements WorkerStatusSource {
  readonly auditLog: AuditLog;
  readonly metrics: PoolMetrics;
  /** Resolves once the pool is draining and no call is live. */
  readonly drained: Promise<void>;
  readonly logger: Logger;

  private versionValue: string | null;
  private stateValue: PoolState = "starting";
  private workerIdValue: string;
  private memberValue = true;
  private rejectedJobs = 0;
  private drainStartedAtValue: number | null = null;
  private drainStuckValue = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private closing: Promise<CloseResult> | undefined;
  private resolveDrained!: () => void;
  private unsubscribeMembership: (() => void) | undefined;
  private readonly sessions = new SessionRegistry<Session>();
  private readonly clock: Clock;
  private readonly startedAt: number;
  private readonly drainTimeoutMs: number;
  private membership: MembershipGate | undefined;
  private readonly tracer: SessionTracer;
  private readonly tenantPolicy: TenantPolicy;
  private unsubscribeRejections: (() => void) | undefined;
  // Events wait here until the outermost operation finished its state change (see `operation`).
  private readonly pendingEvents: QueuedEvent[] = [];
  private operationDepth = 0;
  private delivering = false;
  // Set while close() ends the calls it drops, so those ends do not complete the drain.
  private droppingLive = false;
  // The last membership reason recorded: a non-member whose reason changes (no_manifest →
  // not_member once the manifest is read) gets a record too, so the trail says why.
  private membershipReasonSeen: string | undefined;

  constructor(options: AgentPoolOptions = {}) {
    super();
    this.versionValue = normalizeVersion(options.deploymentVersion);
    this.clock = options.clock ?? systemClock;
    this.logger = safeLogger(options.logger ?? stderrLogger);
    this.tenantPolicy = options.tenantPolicy ?? "reject";
    if (this.tenantPolicy !== "reject" && this.tenantPolicy !== "label") {
      throw new TypeError(`tenantPolicy must be "reject" or "label", got ${JSON.stringify(options.tenantPolicy)}`);
    }
    this.startedAt = this.clock();
    // pid alone repeats in containers (always pid 1): a random part tells a restart in place apart.
    this.workerIdValue = options.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    const drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    if (!(drainTimeoutMs > 0) || !Number.isFinite(drainTimeoutMs)) {
      throw new TypeError(`drainTimeoutMs must be a positive number of milliseconds, got ${String(options.drainTimeoutMs)}`);
    }
    this.drainTimeoutMs = drainTimeoutMs;
    this.tracer = new SessionTracer(options.tracer);
    this.metrics = new PoolMetrics(this, options.metrics);
    const metrics = this.metrics;
    const logger = this.logger;
    const audit = options.audit ?? {};
    const userHooks = audit.hooks ?? {};
    const origin = audit.origin ?? options.auditOrigin;
    this.auditLog = new AuditLog({
      ...audit,
      sinks: audit.sinks ?? options.auditSinks ?? [],
      clock: this.clock,
      version: this.deploymentVersion,
      ...(origin === undefined ? {} : { origin }),
      hooks: {
        onEmit: (record) => {
          metrics.auditEvent(record.event);
          userHooks.onEmit?.(record);
        },
        onSinkError: (sink, error) => {
          metrics.auditSinkError(sink);
          logger.warn({ sink, err: errorMessage(error) }, "audit sink failed; the batch is kept and retried");
          userHooks.onSinkError?.(sink, error);
        },
        onDropped: (sink, count) => {
          metrics.auditRecordsDroppedBy(sink, count);
          logger.error({ sink, count }, "audit sink queue overflowed; records for this sink were dropped (an audit.records_dropped record follows)");
          userHooks.onDropped?.(sink, count);
        },
        ...(userHooks.onCheckpoint === undefined ? {} : { onCheckpoint: (record) => userHooks.onCheckpoint?.(record) }),
      },
    });
    metrics.trackAuditQueues(() => this.auditLog.stats().sinks);
    this.drained = new Promise((resolve) => {
      this.resolveDrained = resolve;
    });
    if (options.membership !== undefined) this.useMembership(options.membership);
  }

  private useMembership(gate: MembershipGate): void {
    this.membership = gate;
    this.memberValue = this.askMembership();
    this.membershipReasonSeen = this.membershipReason;
    this.unsubscribeMembership = gate.subscribe(() => this.refreshMembership());
    // Every manifest the gate refuses goes on record (never the secret or the signature).
    this.unsubscribeRejections = gate.subscribeRejections?.((rejection) => this.recordManifestRejection(rejection));
  }

  /** The version this worker runs (set in code, or adopted from its platform before it serves); null when untagged. */
  get deploymentVersion(): string | null {
    return this.versionValue;
  }

  /**
   * Completes a pool built before its platform's settings were read: on Kubernetes the version
   * label and the mounted manifest arrive with the pod (`attachKubernetes` calls this). Allowed
   * only while `starting` and before any job was offered, so no call is ever taken under one
   * version or gate and finished under another; what the code set is never replaced (a version
   * or gate already present is an error). A gate adopted here is asked at once: with no valid
   * manifest yet, the worker is not a member (`no_manifest`) and that change is recorded.
   */
  adopt(settings: { deploymentVersion?: string; membership?: MembershipGate }): void {
    if (this.stateValue !== "starting" || this.sessions.started > 0 || this.rejectedJobs > 0) {
      throw new Error(
        `AgentPool.adopt: the pool is ${this.stateValue} and has seen jobs; a version or membership gate can only be adopted before the worker serves (attach the platform adapter before runApp/bindAgentPool)`,
      );
    }
    const settledBy = settledPools.get(this);
    if (settledBy !== undefined) {
      throw new Error(`AgentPool.adopt: ${settledBy} already read the pool's version and gate; attach the platform adapter before it`);
    }
    if (settings.deploymentVersion !== undefined && this.versionValue !== null) {
      throw new Error(`AgentPool.adopt: the pool already runs ${JSON.stringify(this.versionValue)} (set in code); the code's version is never replaced`);
    }
    if (settings.membership !== undefined && this.membership !== undefined) {
      throw new Error("AgentPool.adopt: the pool already has a membership gate");
    }
    const version = settings.deploymentVersion === undefined ? undefined : normalizeVersion(settings.deploymentVersion);
    if (version !== undefined && version !== null) {
      this.versionValue = version;
      this.auditLog.adoptVersion(version);
    }
    if (settings.membership !== undefined) {
      this.operation(() => {
        this.useMembership(settings.membership!);
        if (!this.memberValue) this.recordMembership(false, true);
      });
    } else if (version !== undefined && this.membership !== undefined) {
      this.operation(() => this.refreshMembershipNow());
    }
  }

  get state(): PoolState {
    return this.stateValue;
  }

  get workerId(): string {
    return this.workerIdValue;
  }

  get draining(): boolean {
    return isDrainingState(this.stateValue);
  }

  get member(): boolean {
    return this.memberValue;
  }

  /** Whether a new job would be accepted now. */
  get accepting(): boolean {
    return stateAccepts(this.stateValue) && this.memberValue;
  }

  /** Ready for traffic: serving and a member of the active manifest (what `/readyz` answers). */
  get ready(): boolean {
    return this.stateValue === "serving" && this.memberValue;
  }

  get drainStuck(): boolean {
    return this.drainStuckValue;
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  /**
   * Why this worker is not a member, as a code: `no_manifest` (a manifest source is configured
   * but no valid manifest arrived), `manifest_expired`, `not_member` (the version is not listed);
   * undefined while a member.
   */
  get membershipReason(): string | undefined {
    if (this.memberValue) return undefined;
    try {
      return this.membership?.reason?.(this.deploymentVersion) ?? "not_member";
    } catch {
      return "not_member";
    }
  }

  /** What the membership gate says about its accepted manifest (`GET /manifest`), or null without a gate. */
  manifestStatus(): unknown {
    if (this.membership?.status === undefined) return null;
    try {
      return this.membership.status();
    } catch (error) {
      return { error: describeError(error) };
    }
  }

  /** The reason a new job would be refused now, or undefined when it would be accepted. */
  rejectReason(): RejectReason | undefined {
    if (!stateAccepts(this.stateValue)) return "draining";
    if (!this.memberValue) return "membership";
    return undefined;
  }

  /**
   * `starting` → `serving`: called once the worker is registered with its platform. The first
   * registration may name the worker; later ones (a reconnect) keep the id, so series and audit
   * records of calls already live stay attributed to one worker.
   */
  markReady(options: { workerId?: string } = {}): void {
    if (this.stateValue !== "starting") return;
    if (options.workerId !== undefined && options.workerId !== "") this.workerIdValue = options.workerId;
    this.operation(() => this.transition("serving"));
  }

  /**
   * Starts tracking a call. Throws `JobRejectedError` (and records a `worker.rejected` audit
   * event) when the pool is draining, not a member of the active manifest, or the job's
   * metadata is malformed.
   */
  startSession(options: StartSessionOptions): Session {
    return this.operation(() => this.startSessionNow(options));
  }

  private startSessionNow(options: StartSessionOptions): Session {
    const jobId = options.jobId;
    if (typeof jobId !== "string" || jobId === "") {
      throw new TypeError("startSession needs a non-empty jobId (the LiveKit job id)");
    }
    const reason = this.rejectReason();
    if (reason !== undefined) {
      throw this.reject(jobId, reason, reason === "draining" ? "worker is draining" : membershipMessage(this.membershipReason));
    }
    if (this.sessions.has(jobId)) {
      throw new Error(`a session for job ${jobId} is already live on this worker; end it before starting it again`);
    }
    let parsed;
    try {
      parsed = parseMetadata(options.metadata, { tenantPolicy: this.tenantPolicy });
    } catch (error) {
      if (error instanceof InvalidMetadataError) throw this.reject(jobId, "invalid_metadata", error.message);
      throw error;
    }
    const info: SessionInfo = {
      jobId,
      agentName: options.agentName ?? "",
      roomName: options.roomName ?? "",
      deploymentVersion: this.deploymentVersion,
      tenant: parsed.tenant,
      metadata: parsed.metadata,
      startedAt: this.clock(),
      ...(parsed.invalidTenant === undefined ? {} : { invalidTenant: parsed.invalidTenant }),
    };
    const session = new Session(info, this.startSpan(info), this);
    this.sessions.add(session);
    this.metrics.sessionStarted(info.tenant);
    if (parsed.invalidTenant !== undefined) {
      this.metrics.invalidTenant();
      this.logger.warn({ job_id: jobId, invalid_tenant: parsed.invalidTenant }, 'job metadata has a malformed tenant; the call is taken under tenant "invalid" (tenantPolicy: "label")');
    }
    this.queue({ name: "sessionStarted", args: [info] });
    return session;
  }

  /** The live session for a job, if any. */
  session(jobId: string): Session | undefined {
    return this.sessions.get(jobId);
  }

  /**
   * Records a job the integration refused before it became a session (e.g. answered unavailable
   * to the dispatcher), with the same audit event and metric as `startSession`'s rejections.
   */
  reject(jobId: string, reason: RejectReason, message: string): JobRejectedError {
    return this.operation(() => this.rejectNow(jobId, reason, message));
  }

  private rejectNow(jobId: string, reason: RejectReason, message: string): JobRejectedError {
    this.rejectedJobs++;
    this.metrics.jobRejected(reason);
    this.auditLog.emit(AuditEventType.WorkerRejected, {
      target: jobId,
      result: "rejected",
      reason,
      job_id: jobId,
      message,
    });
    const error = new JobRejectedError(reason, jobId, `job ${jobId} rejected: ${message}`);
    this.queue({ name: "rejected", args: [error] });
    return error;
  }

  /** @internal Called by `Session.end`. */
  _end(session: Session, end: SessionEnd): SessionOutcome {
    return this.operation(() => this.endNow(session, end));
  }

  private endNow(session: Session, end: SessionEnd): SessionOutcome {
    const status = normalizeStatus(end.status);
    const endedAt = this.clock();
    const error = errorMessage(end.error);
    const outcome: SessionOutcome = {
      status,
      endedAt,
      durationSeconds: Math.max(0, endedAt - session.info.startedAt),
      ...(error === undefined ? {} : { error }),
    };
    if (!this.sessions.remove(session, status)) return outcome;
    this.metrics.sessionEnded(session.info.tenant, status, outcome.durationSeconds);
    isolated("tracer", () => this.tracer.end(session.span, outcome), (where, error) => this.hookFailed(where, error));
    this.queue({ name: "sessionEnded", args: [session.info, outcome] });
    if (this.stateValue === "draining" && this.sessions.size === 0 && !this.droppingLive) this.finishDrain();
    return outcome;
  }

  /**
   * Stops accepting new jobs; live calls run to hang-up. Non-blocking and idempotent: only the
   * first call changes anything and writes `deployment.drain_started`.
   */
  beginDrain(options: DrainOptions = {}): void {
    if (this.draining || this.stateValue === "closed") return;
    this.operation(() => this.beginDrainNow(options));
  }

  private beginDrainNow(options: DrainOptions): void {
    const actor = options.actor ?? "system";
    const now = this.clock();
    this.drainStartedAtValue = now;
    this.transition("draining");
    this.auditLog.emit(AuditEventType.DrainStarted, {
      // First, so none of them can stand in for the fields below.
      ...(options.fields ?? {}),
      actor,
      target: "worker",
      worker_id: this.workerIdValue,
      active_sessions: this.sessions.size,
      ...(options.reason === undefined ? {} : { reason: options.reason }),
      ...(options.auth === undefined ? {} : { auth: options.auth }),
    });
    for (const session of this.sessions.live.values()) {
      isolated("tracer", () => this.tracer.drainBegan(session.span, now, actor, options.reason), (where, error) => this.hookFailed(where, error));
    }
    if (this.sessions.size === 0) {
      this.finishDrain();
      return;
    }
    this.drainTimer = setTimeout(() => this.operation(() => this.markDrainStuck()), Math.min(this.drainTimeoutMs, MAX_TIMER_MS));
    this.drainTimer.unref();
  }

  runtimeSnapshot(): RuntimeSnapshot {
    const now = this.clock();
    return new RuntimeSnapshot(
      now,
      Math.max(0, now - this.startedAt),
      this.workerIdValue,
      this.deploymentVersion,
      this.draining,
      this.stateValue,
      this.sessions.size,
      this.sessions.started,
      this.sessions.failures,
      this.sessions.byAgent(),
      this.sessions.byTenant(),
      this.rejectedJobs,
      this.drainStartedAtValue,
      this.drainStuckValue,
      this.memberValue,
      this.drainStuckValue ? this.sessions.liveSessions(now) : [],
    );
  }

  /** Live calls with their ages, oldest first. */
  liveSessions(): LiveSessionView[] {
    return this.sessions.liveSessions(this.clock());
  }

  /**
   * Closes the pool: writes `worker.exited`, flushes and closes the audit sinks. With calls
   * still live this refuses unless `dropLiveSessions` is set; then each is ended as `failed`
   * and counted as dropped.
   */
  close(options: CloseOptions = {}): Promise<CloseResult> {
    this.closing ??= this.closeOnce(options).catch((error: unknown) => {
      this.closing = undefined;
      throw error;
    });
    return this.closing;
  }

  private async closeOnce(options: CloseOptions): Promise<CloseResult> {
    const dropped = this.operation(() => this.closeNow(options));
    await this.auditLog.close({ timeoutMs: options.auditFlushTimeoutMs ?? 5000 });
    return { droppedSessions: dropped };
  }

  private closeNow(options: CloseOptions): number {
    const live = [...this.sessions.live.values()];
    if (live.length > 0 && options.dropLiveSessions !== true) {
      throw new Error(
        `refusing to close with ${live.length} live call(s): drain first (beginDrain, then await pool.drained), or pass { dropLiveSessions: true } to drop them on purpose`,
      );
    }
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    this.unsubscribeMembership?.();
    this.unsubscribeRejections?.();
    this.metrics.sessionsDropped(live.length);
    // The drain did not complete: those calls were cut. No drain_completed is written; the
    // worker.exited record below (result "dropped") says what happened.
    this.droppingLive = true;
    try {
      for (const session of live) session.end({ status: "failed", error: "dropped: worker closed with the call live" });
    } finally {
      this.droppingLive = false;
    }
    this.auditLog.emit(AuditEventType.WorkerExited, {
      actor: options.actor ?? "system",
      target: "worker",
      result: live.length > 0 ? "dropped" : "ok",
      worker_id: this.workerIdValue,
      dropped_sessions: live.length,
      total_sessions_started: this.sessions.started,
      ...(options.reason === undefined ? {} : { reason: options.reason }),
    });
    this.drainStuckValue = false;
    this.transition("closed");
    // Whoever awaits the drain must wake: a closed pool has no live call and never will.
    this.resolveDrained();
    return live.length;
  }

  private finishDrain(): void {
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    const wasStuck = this.drainStuckValue;
    this.drainStuckValue = false;
    this.transition("drained");
    this.auditLog.emit(AuditEventType.DrainCompleted, {
      target: "worker",
      worker_id: this.workerIdValue,
      drain_seconds: this.drainStartedAtValue === null ? 0 : Math.max(0, this.clock() - this.drainStartedAtValue),
      was_stuck: wasStuck,
    });
    this.resolveDrained();
  }

  private markDrainStuck(): void {
    this.drainTimer = undefined;
    if (this.stateValue !== "draining" || this.sessions.size === 0) return;
    this.drainStuckValue = true;
    const live = this.liveSessions();
    this.auditLog.emit(AuditEventType.DrainStuck, {
      target: "worker",
      result: "stuck",
      worker_id: this.workerIdValue,
      drain_timeout_seconds: this.drainTimeoutMs / 1000,
      active_sessions: live.length,
      // Bounded: an operator needs the oldest calls, not every one of ten thousand.
      sessions: live.slice(0, 50).map((s) => ({ job_id: s.job_id, tenant: s.tenant, age_seconds: s.age_seconds })),
    });
    this.logger.warn(
      { active_sessions: live.length, oldest_age_seconds: live[0]?.age_seconds },
      "drain timeout passed with calls still live; nothing was killed, investigate the stalled calls",
    );
    this.queue({ name: "drainStuck", args: [live] });
  }

  private refreshMembership(): void {
    this.operation(() => this.refreshMembershipNow());
  }

  private refreshMembershipNow(): void {
    if (this.membership === undefined || this.stateValue === "closed") return;
    const member = this.askMembership();
    const changed = member !== this.memberValue;
    this.memberValue = member;
    const reason = this.membershipReason;
    if (!changed && reason === this.membershipReasonSeen) return;
    this.recordMembership(member, changed);
  }

  private recordMembership(member: boolean, changed: boolean): void {
    const reason = this.membershipReason;
    this.membershipReasonSeen = reason;
    this.auditLog.emit(AuditEventType.MembershipChanged, {
      target: "worker",
      result: member ? "member" : "not_member",
      worker_id: this.workerIdValue,
      member,
      ...(reason === undefined ? {} : { reason }),
    });
    if (changed) this.queue({ name: "membership", args: [member] });
  }

  private askMembership(): boolean {
    try {
      return this.membership?.isMember(this.deploymentVersion) ?? true;
    } catch (error) {
      // A gate that cannot answer cannot vouch for this worker: fail closed.
      this.logger.error({ err: describeError(error) }, "membership gate threw; treating this worker as not a member");
      return false;
    }
  }

  private recordManifestRejection(rejection: ManifestRejection): void {
    this.auditLog.emit(MANIFEST_REJECTED_EVENT, {
      target: rejection.source,
      result: "rejected",
      reason: rejection.code,
      message: rejection.reason,
      source: rejection.source,
      worker_id: this.workerIdValue,
      ...(rejection.seq === undefined ? {} : { seq: rejection.seq }),
      ...(rejection.currentSeq === undefined ? {} : { current_seq: rejection.currentSeq }),
    });
  }

  private transition(to: PoolState): void {
    const from = this.stateValue;
    if (!canTransition(from, to)) throw new Error(`internal: illegal pool state transition ${from} → ${to}`);
    this.stateValue = to;
    this.queue({ name: "state", args: [to, from] });
  }

  /**
   * Runs one state change. Events it raises are held until the outermost operation returns (or
   * throws), so a listener always sees a finished state change: the audit record written, the
   * counters updated, `drained` resolved. A listener that starts another operation (e.g. drains
   * from `sessionEnded`) has its events delivered after the current ones, in order.
   */
  private operation<T>(fn: () => T): T {
    this.operationDepth++;
    try {
      return fn();
    } finally {
      this.operationDepth--;
      if (this.operationDepth === 0) this.deliverEvents();
    }
  }

  private queue(event: QueuedEvent): void {
    this.pendingEvents.push(event);
  }

  private deliverEvents(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      let event: QueuedEvent | undefined;
      while ((event = this.pendingEvents.shift()) !== undefined) {
        const { name, args } = event;
        // rawListeners keeps `once` wrappers, which remove themselves when called.
        for (const listener of this.rawListeners(name)) {
          isolated(name, () => (listener as (...a: unknown[]) => unknown).apply(this, args), (where, error) => this.listenerFailed(where, error));
        }
      }
    } finally {
      this.delivering = false;
    }
  }

  // A user-supplied tracer is a hook like any other: a throwing one costs the span, never the call.
  private startSpan(info: SessionInfo): Span {
    try {
      return this.tracer.start(info);
    } catch (error) {
      this.hookFailed("tracer", error);
      return trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
    }
  }

  private hookFailed(hook: string, error: unknown): void {
    this.logger.error({ hook, err: describeError(error) }, "a hook threw; it was skipped and the worker carries on");
  }

  private listenerFailed(event: string, error: unknown): void {
    this.metrics.listenerError(event);
    this.logger.error({ event, err: describeError(error) }, "a pool event listener threw; it was skipped and the worker carries on");
  }
}

function normalizeVersion(version: string | undefined): string | null {
  if (version === undefined) return null;
  if (typeof version !== "string") {
    throw new TypeError(`deploymentVersion must be a string such as "v2.0.0", got ${typeof version}`);
  }
  const trimmed = version.trim();
  if (trimmed === "") {
    throw new TypeError('deploymentVersion is blank: pass the version this worker runs (e.g. "v2.0.0"), or omit it for an untagged worker');
  }
  // The version goes into metric labels, audit records, LiveKit attributes and log lines: a
  // control character there can forge a log line or break a parser downstream.
  const control = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.exec(trimmed);
  if (control !== null) {
    const code = control[0].codePointAt(0)!.toString(16).padStart(4, "0");
    throw new TypeError(
      `deploymentVersion contains a control character (U+${code.toUpperCase()} at index ${control.index}); use a plain version such as "v2.0.0" or a git sha (check how APP_VERSION/OPENRTC_DEPLOYMENT_VERSION is set)`,
    );
  }
  if (trimmed.length > MAX_VERSION_LENGTH) {
    throw new TypeError(
      `deploymentVersion is ${trimmed.length} characters, more than ${MAX_VERSION_LENGTH}; use a short version such as "v2.0.0" or a git sha`,
    );
  }
  return trimmed;
}

function membershipMessage(reason: string | undefined): string {
  if (reason === "no_manifest") return "no valid manifest has arrived (the gate fails closed: no_manifest)";
  if (reason === "manifest_expired") return "the active manifest has expired (manifest_expired)";
  return "worker version is not in the active manifest";
}

function normalizeStatus(status: SessionStatus): SessionStatus {
  if (status === "success" || status === "failed" || status === "cancelled") return status;
  throw new TypeError(`session status must be "success", "failed" or "cancelled", got ${JSON.stringify(status)}`);
}
