import type { AgentPool } from "./pool.ts";

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
   * `beforeExitTimeoutMs`.
   */
  beforeExit?: (forced: boolean) => Promise<void> | void;
  beforeExitTimeoutMs?: number;
  /**
   * Keep serving (e.g. `/metrics`) this long after the pool closed, before exiting, so a last
   * Prometheus scrape sees the final values (0 live calls; dropped calls on a forced exit).
   * Default 0: a drained worker exits at once.
   */
  metricsLingerMs?: number;
  /** Default `process.exit`. */
  exit?: (code: number) => void;
}

export interface ProcessLifecycle {
  /** Resolves with the exit code once the process is about to exit. */
  readonly exiting: Promise<number>;
  detach(): void;
}

/** Exit code after a forced shutdown that dropped calls (128 + SIGINT). */
export const FORCED_EXIT_CODE = 130;

/**
 * Wires process signals and exit to the pool: the first SIGTERM (or SIGINT) begins the drain;
 * once the last call ends the process exits 0. A second SIGINT is the operator's explicit
 * choice to exit now: the live calls are dropped, counted and recorded, and the process exits
 * 130. A repeated SIGTERM never drops a call.
 */
export function attachProcessLifecycle(pool: AgentPool, options: ProcessLifecycleOptions = {}): ProcessLifecycle {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const beforeExitTimeoutMs = options.beforeExitTimeoutMs ?? 10_000;
  let resolveExiting!: (code: number) => void;
  const exiting = new Promise<number>((resolve) => {
    resolveExiting = resolve;
  });
  let shuttingDown = false;
  let sigints = 0;

  const shutdown = async (forced: boolean, actor: string): Promise<void> => {
    if (shuttingDown && !forced) return;
    shuttingDown = true;
    let code = 0;
    try {
      const { droppedSessions } = await pool.close({
        actor,
        reason: forced ? "forced exit" : "drained",
        dropLiveSessions: forced,
      });
      if (droppedSessions > 0) code = FORCED_EXIT_CODE;
    } catch (error) {
      pool.logger.error({ err: error instanceof Error ? error.message : String(error) }, "closing the pool failed");
      code = 1;
    }
    if ((options.metricsLingerMs ?? 0) > 0) await new Promise((resolve) => setTimeout(resolve, options.metricsLingerMs));
    try {
      if (options.beforeExit !== undefined) await withTimeout(Promise.resolve(options.beforeExit(forced)), beforeExitTimeoutMs);
    } catch (error) {
      pool.logger.warn({ err: error instanceof Error ? error.message : String(error) }, "beforeExit hook failed; exiting anyway");
    }
    detach();
    resolveExiting(code);
    exit(code);
  };

  const onSigterm = (): void => {
    if (pool.draining) {
      pool.logger.info({ active_sessions: pool.activeSessions }, "SIGTERM again: still draining; live calls keep running");
      return;
    }
    pool.beginDrain({ actor: "signal:SIGTERM", reason: "received SIGTERM" });
  };
  const onSigint = (): void => {
    sigints++;
    if (sigints === 1) {
      if (!pool.draining) pool.beginDrain({ actor: "signal:SIGINT", reason: "received SIGINT" });
      return;
    }
    pool.logger.warn({ active_sessions: pool.activeSessions }, "second SIGINT: exiting now, live calls are dropped");
    void shutdown(true, "signal:SIGINT");
  };

  const installSignals = options.signals !== false;
  if (installSignals) {
    process.on("SIGTERM", onSigterm);
    if (options.sigint !== false) process.on("SIGINT", onSigint);
  }
  let drainedHook = true;
  if (options.exitOnDrained !== false) {
    void pool.drained.then(() => {
      if (drainedHook) void shutdown(false, "system");
    });
  }

  function detach(): void {
    drainedHook = false;
    process.off("SIGTERM", onSigterm);
    process.off("SIGINT", onSigint);
  }

  return { exiting, detach };
}

async function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      promise,
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
        timer.unref();
      }),
    ]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
