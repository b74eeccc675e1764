import type { DrainOptions } from "./drain.ts";
import type { AgentPool } from "./pool.ts";
import { withDeadline } from "./audit/errors.ts";

export interface ProcessLifecycleOptions {
  /**
   * Install SIGTERM/SIGINT handlers. Turn off when the host framework owns signals (then call
   * `pool.beginDrain()` from its handler); exit-on-drained still applies.
   */
  signals?: boolean;
  /** Also treat SIGINT like SIGTERM (first drains, second forces). Default true. */
  sigint?: boolean;
  /** Exit the process once the drain completes, whoever began it. Default true. */
  exitOnDrained?: boolean;
  /**
   * Runs after the pool closed (`worker.exited` written, audit flushed), right before the
   * process exits: close the LiveKit AgentServer and the control server here. Bounded by
   * `beforeExitTimeoutMs`. Hooks of several attachments run last-attached first.
   */
  beforeExit?: (forced: boolean) => Promise<void> | void;
  beforeExitTimeoutMs?: number;
  /**
   * Keep serving (e.g. `/metrics`) this long after the pool closed, before exiting, so a last
   * Prometheus scrape sees the final values (0 live calls; dropped calls on a forced exit).
   * Default 0: a drained worker exits at once.
   */
  metricsLingerMs?: number;
  /** Bound on waiting for the audit sinks to acknowledge the last records. Default 5 s. */
  auditFlushTimeoutMs?: number;
  /** Default `process.exit`. */
  exit?: (code: number) => void;
  /**
   * Who a signal-begun drain is recorded as (default `signal:SIGTERM` / `signal:SIGINT`) and extra
   * fields for its `deployment.drain_started` record (e.g. the Kubernetes pod). Fields of several
   * attachments are merged; the signal's name is kept in `signal`.
   */
  signalDrain?: { actor?: string; fields?: Readonly<Record<string, string | number | boolean>> };
}

export interface ProcessLifecycle {
  /** Resolves with the exit code once the process is about to exit. */
  readonly exiting: Promise<number>;
  /**
   * Raises the code the process exits with once drained (e.g. 1 after the LiveKit connection
   * failed for good); never lowers it, never shortens the drain.
   */
  setExitCode(code: number): void;
  /** Removes this attachment's hook; the signal handlers go with the last attachment. */
  detach(): void;
}

/** Exit code after a forced shutdown that dropped calls (128 + SIGINT). */
export const FORCED_EXIT_CODE = 130;

const lifecycles = new WeakMap<AgentPool, SharedLifecycle>();

/**
 * Wires process signals and exit to the pool: the first SIGTERM (or SIGINT) begins the drain;
 * once the last call ends the process exits 0. A second SIGINT is the operator's explicit
 * choice to exit now: the live calls are dropped, counted and recorded, and the process exits
 * 130. A repeated SIGTERM never drops a call.
 *
 * One pool has one shutdown path however many parts attach (`runApp`, the Kubernetes and
 * systemd adapters, the application): a later call joins the first one — its `beforeExit` is
 * added, `metricsLingerMs` and `beforeExitTimeoutMs` take the largest value asked for, an
 * explicit `exit` replaces the default — instead of installing competing signal handlers.
 */
export function attachProcessLifecycle(pool: AgentPool, options: ProcessLifecycleOptions = {}): ProcessLifecycle {
  let shared = lifecycles.get(pool);
  if (shared === undefined || shared.finished) {
    shared = new SharedLifecycle(pool);
    lifecycles.set(pool, shared);
  }
  return shared.join(options);
}

interface Attachment {
  beforeExit: ((forced: boolean) => Promise<void> | void) | undefined;
  wantsSignals: boolean;
  wantsSigint: boolean;
}

/** The one shutdown path of a pool; attachments only add hooks and settings to it. */
class SharedLifecycle {
  finished = false;
  private readonly attachments = new Set<Attachment>();
  private readonly exiting: Promise<number>;
  private resolveExiting!: (code: number) => void;
  private exitFn: ((code: number) => void) | undefined;
  private beforeExitTimeoutMs = 10_000;
  private metricsLingerMs = 0;
  private auditFlushTimeoutMs = 5000;
  private exitOnDrained = false;
  private minimumCode = 0;
  private shutdown: Promise<void> | undefined;
  private sigints = 0;
  private sigtermInstalled = false;
  private signalActor: string | undefined;
  private signalFields: Record<string, string | number | boolean> = {};
  private sigintInstalled = false;

  constructor(private readonly pool: AgentPool) {
    this.exiting = new Promise<number>((resolve) => {
      this.resolveExiting = resolve;
    });
    void pool.drained.then(() => {
      if (this.exitOnDrained && this.attachments.size > 0) void this.begin(false, "system");
    });
  }

  join(options: ProcessLifecycleOptions): ProcessLifecycle {
    const attachment: Attachment = {
      beforeExit: options.beforeExit,
      wantsSignals: options.signals !== false,
      wantsSigint: options.signals !== false && options.sigint !== false,
    };
    this.attachments.add(attachment);
    if (options.exit !== undefined) this.exitFn = options.exit;
    // The first attachment sets a bound; a later one may only lengthen it.
    const first = this.attachments.size === 1;
    if (options.beforeExitTimeoutMs !== undefined) this.beforeExitTimeoutMs = first ? options.beforeExitTimeoutMs : Math.max(this.beforeExitTimeoutMs, options.beforeExitTimeoutMs);
    if (options.auditFlushTimeoutMs !== undefined) this.auditFlushTimeoutMs = first ? options.auditFlushTimeoutMs : Math.max(this.auditFlushTimeoutMs, options.auditFlushTimeoutMs);
    this.metricsLingerMs = Math.max(this.metricsLingerMs, options.metricsLingerMs ?? 0);
    if (options.exitOnDrained !== false) this.exitOnDrained = true;
    if (options.signalDrain?.actor !== undefined) this.signalActor = options.signalDrain.actor;
    if (options.signalDrain?.fields !== undefined) this.signalFields = { ...this.signalFields, ...options.signalDrain.fields };
    this.installSignals();
    let detached = false;
    return {
      exiting: this.exiting,
      setExitCode: (code) => {
        this.minimumCode = Math.max(this.minimumCode, code);
      },
      detach: () => {
        if (detached) return;
        detached = true;
        this.attachments.delete(attachment);
        this.installSignals();
      },
    };
  }

  private installSignals(): void {
    const sigterm = [...this.attachments].some((a) => a.wantsSignals);
    const sigint = [...this.attachments].some((a) => a.wantsSigint);
    if (sigterm !== this.sigtermInstalled) {
      if (sigterm) process.on("SIGTERM", this.onSigterm);
      else process.off("SIGTERM", this.onSigterm);
      this.sigtermInstalled = sigterm;
    }
    if (sigint !== this.sigintInstalled) {
      if (sigint) process.on("SIGINT", this.onSigint);
      else process.off("SIGINT", this.onSigint);
      this.sigintInstalled = sigint;
    }
  }

  private readonly onSigterm = (): void => {
    if (this.pool.draining) {
      this.pool.logger.info({ active_sessions: this.pool.activeSessions }, "SIGTERM again: still draining; live calls keep running");
      return;
    }
    this.pool.beginDrain(this.signalDrainOptions("SIGTERM"));
  };

  private signalDrainOptions(signal: "SIGTERM" | "SIGINT"): DrainOptions {
    const configured = this.signalActor !== undefined || Object.keys(this.signalFields).length > 0;
    return {
      actor: this.signalActor ?? `signal:${signal}`,
      reason: `received ${signal}`,
      ...(configured ? { fields: { ...this.signalFields, signal } } : {}),
    };
  }

  private readonly onSigint = (): void => {
    this.sigints++;
    if (this.sigints === 1) {
      if (!this.pool.draining) this.pool.beginDrain(this.signalDrainOptions("SIGINT"));
      return;
    }
    this.pool.logger.warn({ active_sessions: this.pool.activeSessions }, "second SIGINT: exiting now, live calls are dropped");
    void this.begin(true, "signal:SIGINT");
  };

  /**
   * Runs the shutdown once. A forced request while a graceful one is already under way has no
   * call left to drop (the graceful path starts only once drained): it exits at once instead of
   * running the hooks a second time.
   */
  private begin(forced: boolean, actor: string): Promise<void> {
    if (this.shutdown !== undefined) {
      if (forced && !this.finished) {
        this.pool.logger.warn({}, "second SIGINT during shutdown: exiting without waiting for the remaining hooks");
        this.finish(Math.max(this.minimumCode, FORCED_EXIT_CODE));
      }
      return this.shutdown;
    }
    this.shutdown = this.run(forced, actor);
    return this.shutdown;
  }

  private async run(forced: boolean, actor: string): Promise<void> {
    let code = this.minimumCode;
    try {
      const { droppedSessions } = await this.pool.close({
        actor,
        reason: forced ? "forced exit" : "drained",
        dropLiveSessions: forced,
        auditFlushTimeoutMs: this.auditFlushTimeoutMs,
      });
      if (droppedSessions > 0) code = Math.max(code, FORCED_EXIT_CODE);
    } catch (error) {
      this.pool.logger.error({ err: error instanceof Error ? error.message : String(error) }, "closing the pool failed");
      code = Math.max(code, 1);
    }
    if (this.metricsLingerMs > 0) await new Promise((resolve) => setTimeout(resolve, this.metricsLingerMs));
    // Last attached first: the part started last (usually the AgentServer) stops first, and the
    // probes of an adapter attached earlier keep answering until the very end.
    for (const attachment of [...this.attachments].reverse()) {
      if (this.finished) return;
      if (attachment.beforeExit === undefined) continue;
      try {
        if (!(await withDeadline(Promise.resolve().then(() => attachment.beforeExit!(forced)), Date.now() + this.beforeExitTimeoutMs))) {
          throw new Error(`timed out after ${this.beforeExitTimeoutMs} ms`);
        }
      } catch (error) {
        this.pool.logger.warn({ err: error instanceof Error ? error.message : String(error) }, "beforeExit hook failed; exiting anyway");
      }
    }
    this.finish(Math.max(code, this.minimumCode));
  }

  private finish(code: number): void {
    if (this.finished) return;
    this.finished = true;
    // A forced exit can cut the pool's audit flush short: hand what is left to the sinks that
    // can write synchronously (the file sink) before the process goes.
    this.pool.auditLog.flushSync();
    this.resolveExiting(code);
    // Exit first, unhook after: with the handlers gone, a late SIGTERM would get the default
    // action and kill the process mid-exit (while 'exit' hooks flush), turning exit 0 into a
    // signal death. With the real process.exit the lines below never run; an injected exit
    // returns and the process lives on without our handlers.
    (this.exitFn ?? ((c: number) => process.exit(c)))(code);
    this.attachments.clear();
    this.installSignals();
  }
}

