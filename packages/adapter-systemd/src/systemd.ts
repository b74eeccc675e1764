import { readFile } from "node:fs/promises";
import path from "node:path";
import { attachProcessLifecycle, type AgentPool, type Logger, type ManifestOfferResult, type PoolState, type ProcessLifecycle } from "@openrtc/core";
import { describeAddress, NotifySocket, NotifySocketError } from "./notify-socket.ts";
import { formatStatus } from "./status.ts";

export interface SystemdOptions {
  /**
   * How much time each `EXTEND_TIMEOUT_USEC=` asks systemd for while the worker drains. It is
   * re-sent every third of this, so an extension is renewed two thirds of it before it runs out:
   * a stalled event loop (a GC pause, a slow audit sink) shorter than that never lets systemd's
   * stop timeout kill a live call. Default 30 000 ms.
   */
  extendByMs?: number;
  /**
   * Optional ceiling on the whole stop, counted from the drain's start: no extension reaches past
   * it. Shortly before it (5 s, or a quarter of `maxStopMs` if that is less) the calls still live
   * are dropped on purpose: counted and recorded (`openrtc_dropped_sessions_total`, a
   * `worker.exited` audit record with `dropped_sessions`), then the process exits 130 through the
   * pool's one shutdown path. Should that not finish in time, systemd's SIGKILL follows.
   * Default: none (a live call always gets more time).
   */
  maxStopMs?: number;
  /** Passed to the pool's shutdown path (`attachProcessLifecycle`); default `process.exit`. */
  exit?: (code: number) => void;
  /** Where `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` are read. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Default: the pool's logger. */
  logger?: Logger;
  /**
   * The signal that means "reload" (`ExecReload=kill -HUP $MAINPID`, or `Type=notify-reload` with
   * `ReloadSignal=` on systemd ≥ 253). `false` leaves the signal alone. Default `"SIGHUP"`; it is
   * handled only while `NOTIFY_SOCKET` is set.
   */
  reloadSignal?: NodeJS.Signals | false;
  /** On reload, read this manifest file again and offer it to the gate (`ManifestGate.offer`). */
  manifest?: { gate: { offer(raw: unknown, source: string): ManifestOfferResult }; file: string };
  /** On reload, after the manifest: re-read the application's own configuration. */
  onReload?: () => void | Promise<void>;
}

export interface SystemdAttachment {
  /** Stops notifying, removes the listeners, timers and the reload handler. Idempotent. */
  close(): void;
}

const DEFAULT_EXTEND_BY_MS = 30_000;
const MIN_EXTEND_BY_MS = 30;
const MAX_DROP_LEAD_MS = 5000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Maps systemd's service protocol onto the pool, for a `Type=notify` unit:
 *
 * - `READY=1` (with `MAINPID=`) once the pool serves (LiveKit registered the worker);
 * - `STATUS=` kept current: "v2.0.0 serving, 3 live calls", "v1.0.0 draining, 2 live calls left,
 *   oldest 4m12s";
 * - on the drain (the SIGTERM of `systemctl stop`, or any other start of the drain): `STOPPING=1`
 *   at once, then `EXTEND_TIMEOUT_USEC=` before each extension runs out while the process lives,
 *   so a short `TimeoutStopSec=` never kills a live call; the process exits 0 once drained;
 * - `WATCHDOG=1` every half `WATCHDOG_USEC` when the watchdog is on for this process;
 * - on SIGHUP: `RELOADING=1` with `MONOTONIC_USEC=`, the manifest read again, then `READY=1`.
 *
 * Signals and exit stay with the pool's one shutdown path (`attachProcessLifecycle`), which this
 * joins; the adapter only reacts to the pool's events. Without `NOTIFY_SOCKET` nothing is sent
 * (said once at debug level) and the shutdown path is still joined, so SIGTERM drains the same
 * in a terminal as under systemd. A broken or vanished socket is reported once and never touches
 * a call.
 */
export function attachSystemd(pool: AgentPool, options: SystemdOptions = {}): SystemdAttachment {
  return new SystemdNotifier(pool, options);
}

class SystemdNotifier implements SystemdAttachment {
  private readonly logger: Logger;
  private readonly extendByMs: number;
  private readonly maxStopMs: number | undefined;
  private readonly lifecycle: ProcessLifecycle;
  private socket: NotifySocket | undefined;
  private closed = false;
  // Set once the process is on its way out (or close()): no timer is armed after it.
  private stopped = false;
  private readySent = false;
  private stopStartedAt: number | undefined;
  private extendTimer: NodeJS.Timeout | undefined;
  private ceilingTimer: NodeJS.Timeout | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private lastStatus: string | undefined;
  private statusQueued = false;
  private note: string | undefined;
  private failing = false;
  private failures = 0;
  private reloading = false;
  private reloadAgain = false;
  private readonly reloadSignal: NodeJS.Signals | false;

  constructor(
    private readonly pool: AgentPool,
    private readonly options: SystemdOptions,
  ) {
    this.logger = options.logger ?? pool.logger;
    this.extendByMs = options.extendByMs ?? DEFAULT_EXTEND_BY_MS;
    if (!Number.isFinite(this.extendByMs) || this.extendByMs < MIN_EXTEND_BY_MS || this.extendByMs > MAX_TIMER_MS) {
      throw new RangeError(`attachSystemd: extendByMs must be a number of milliseconds from ${MIN_EXTEND_BY_MS} to ${MAX_TIMER_MS} (got ${String(options.extendByMs)})`);
    }
    this.maxStopMs = options.maxStopMs;
    if (this.maxStopMs !== undefined && (!Number.isFinite(this.maxStopMs) || this.maxStopMs <= 0 || this.maxStopMs > MAX_TIMER_MS)) {
      throw new RangeError(`attachSystemd: maxStopMs must be a positive number of milliseconds up to ${MAX_TIMER_MS} (got ${String(options.maxStopMs)})`);
    }
    this.reloadSignal = options.reloadSignal ?? "SIGHUP";
    const env = options.env ?? process.env;

    this.lifecycle = attachProcessLifecycle(pool, {
      ...(options.exit === undefined ? {} : { exit: options.exit }),
      beforeExit: (forced) => this.beforeExit(forced),
    });
    // The pool's own exit: nothing is sent after it (with an injected `exit` the process lives on).
    void this.lifecycle.exiting.then(() => this.stopTimers());

    const address = env.NOTIFY_SOCKET;
    if (address === undefined || address === "") {
      this.logger.debug({}, "systemd: NOTIFY_SOCKET is not set (not a Type=notify service): no notifications are sent; SIGTERM still drains");
      return;
    }
    try {
      this.socket = new NotifySocket(address);
    } catch (error) {
      this.reportFailure(error);
      return;
    }
    pool.on("state", this.onState);
    pool.on("sessionStarted", this.queueStatus);
    pool.on("sessionEnded", this.queueStatus);
    pool.on("membership", this.queueStatus);
    pool.on("drainStuck", this.queueStatus);
    if (this.reloadSignal !== false) process.on(this.reloadSignal, this.onReloadSignal);
    this.startWatchdog(env);
    this.onState(pool.state);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    this.pool.off("state", this.onState);
    this.pool.off("sessionStarted", this.queueStatus);
    this.pool.off("sessionEnded", this.queueStatus);
    this.pool.off("membership", this.queueStatus);
    this.pool.off("drainStuck", this.queueStatus);
    if (this.reloadSignal !== false) process.off(this.reloadSignal, this.onReloadSignal);
    this.lifecycle.detach();
    this.socket?.close();
    this.socket = undefined;
  }

  private readonly onState = (state: PoolState): void => {
    if (state === "serving") this.ready();
    else if (state === "draining" || state === "drained" || state === "closed") this.beginStop();
    else this.queueStatus();
  };

  private ready(): void {
    if (this.readySent) return;
    this.readySent = true;
    this.send(`READY=1\nMAINPID=${process.pid}\n${this.statusLine()}`);
  }

  /**
   * The drain began (or the pool closed without one): tell systemd the service is stopping and
   * ask for the first extension in the same datagram, so no `TimeoutStopSec=` however short can
   * pass between the SIGTERM and the first extension.
   */
  private beginStop(): void {
    if (this.stopStartedAt !== undefined) {
      this.queueStatus();
      return;
    }
    this.stopStartedAt = performance.now();
    this.extend("STOPPING=1\n");
    if (this.maxStopMs !== undefined && !this.stopped) {
      const lead = Math.min(MAX_DROP_LEAD_MS, this.maxStopMs / 4);
      this.ceilingTimer = setTimeout(this.onCeiling, this.maxStopMs - lead);
      this.ceilingTimer.unref();
    }
  }

  private readonly extend = (prefix = ""): void => {
    this.extendTimer = undefined;
    if (this.stopped || this.stopStartedAt === undefined) return;
    let ask = this.extendByMs;
    let last = false;
    if (this.maxStopMs !== undefined) {
      const left = this.stopStartedAt + this.maxStopMs - performance.now();
      if (left <= ask) {
        ask = left;
        last = true;
      }
    }
    const lines = [prefix.trimEnd()];
    if (ask >= 1) lines.push(`EXTEND_TIMEOUT_USEC=${Math.floor(ask * 1000)}`);
    const status = this.statusLine();
    if (status !== "" || prefix !== "") lines.push(status);
    const message = lines.filter((line) => line !== "").join("\n");
    if (message !== "") this.send(message);
    if (last) return;
    // Unref'd: a pending extension must never be what keeps a drained worker alive.
    this.extendTimer = setTimeout(this.extend, this.extendByMs / 3);
    this.extendTimer.unref();
  };

  private readonly onCeiling = (): void => {
    this.ceilingTimer = undefined;
    const live = this.pool.activeSessions;
    if (this.closed || live === 0 || this.pool.state === "closed") return;
    this.note = `stop ceiling maxStopMs=${this.maxStopMs} reached: ${live} live call${live === 1 ? "" : "s"} dropped`;
    this.logger.error({ active_sessions: live, max_stop_ms: this.maxStopMs }, "systemd: stop ceiling reached; dropping the live calls (recorded) before systemd kills the worker");
    this.sendStatusNow();
    // Closing the pool resolves `drained`: the shared shutdown path takes it from here and exits
    // 130 (calls were dropped) after the audit flush and the other parts' beforeExit hooks.
    this.pool
      .close({ dropLiveSessions: true, actor: "systemd", reason: `stop ceiling (maxStopMs ${this.maxStopMs}) reached with ${live} live call(s)` })
      .catch((error: unknown) => this.logger.error({ err: describe(error) }, "systemd: closing the pool at the stop ceiling failed"));
  };

  private startWatchdog(env: NodeJS.ProcessEnv): void {
    const raw = env.WATCHDOG_USEC;
    if (raw === undefined || raw === "") return;
    const usec = Number(raw);
    if (!Number.isSafeInteger(usec) || usec <= 0) {
      this.logger.warn({ watchdog_usec: raw }, "systemd: WATCHDOG_USEC is not a positive integer; no watchdog pings are sent");
      return;
    }
    const pid = env.WATCHDOG_PID;
    if (pid !== undefined && pid !== "" && Number(pid) !== process.pid) {
      // The watchdog belongs to another process (our parent or a wrapper): pinging for it would lie.
      this.logger.debug({ watchdog_pid: pid }, "systemd: the watchdog is for another process; no pings from this one");
      return;
    }
    if (this.stopped) return;
    const everyMs = Math.max(1, Math.min(MAX_TIMER_MS, Math.floor(usec / 2000)));
    this.send("WATCHDOG=1");
    // A plain interval on the main event loop on purpose: when the loop stalls the pings stop,
    // and systemd restarts a worker that no longer answers anything.
    this.watchdogTimer = setInterval(() => this.send("WATCHDOG=1"), everyMs);
    this.watchdogTimer.unref();
  }

  private readonly onReloadSignal = (): void => {
    void this.reload();
  };

  private async reload(): Promise<void> {
    if (this.closed) return;
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    if (this.pool.draining || this.pool.state === "closed") {
      this.logger.info({ state: this.pool.state }, "systemd: reload ignored while the worker drains");
      return;
    }
    this.reloading = true;
    try {
      do {
        this.reloadAgain = false;
        this.send(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}\nSTATUS=${formatStatus(this.pool, "reloading")}`);
        const problems = await this.runReload();
        this.note = problems.length === 0 ? undefined : `last reload: ${problems.join("; ")}`;
        if (this.closed) return;
        this.send(`READY=1\n${this.statusLine()}`);
        // A drain that began during the reload: its STOPPING=1 reached systemd while it was
        // reloading; say it again now that the reload is over.
        if (this.stopStartedAt !== undefined) this.send("STOPPING=1");
      } while (this.reloadAgain && !this.closed && !this.pool.draining);
    } finally {
      this.reloading = false;
    }
  }

  private async runReload(): Promise<string[]> {
    const problems: string[] = [];
    const manifest = this.options.manifest;
    if (manifest !== undefined) {
      const file = path.resolve(manifest.file);
      try {
        const text = await readFile(file, "utf8");
        const result = manifest.gate.offer(text, `file:${file}`);
        if (!result.accepted) problems.push(`manifest ${result.code ?? "rejected"}`);
        this.logger.info({ file, accepted: result.accepted, changed: result.changed, code: result.code }, "systemd: reload read the manifest again");
      } catch (error) {
        problems.push(`manifest unreadable (${(error as NodeJS.ErrnoException).code ?? describe(error)})`);
        this.logger.warn({ file, err: describe(error) }, "systemd: reload could not read the manifest; the current one stays");
      }
    }
    if (this.options.onReload !== undefined) {
      try {
        await this.options.onReload();
      } catch (error) {
        problems.push("onReload failed");
        this.logger.warn({ err: describe(error) }, "systemd: the onReload hook failed");
      }
    }
    return problems;
  }

  private beforeExit(forced: boolean): void {
    this.sendStatusNow(forced ? "forced exit" : undefined);
  }

  private readonly queueStatus = (): void => {
    if (this.statusQueued || this.closed) return;
    // Coalesced: a burst of call starts and ends in one tick sends one STATUS= datagram.
    this.statusQueued = true;
    queueMicrotask(() => {
      this.statusQueued = false;
      this.sendStatusNow();
    });
  };

  private sendStatusNow(extra?: string): void {
    const line = this.statusLine(extra);
    if (line !== "") this.send(line);
  }

  /** `STATUS=...`, or "" when systemd already shows this text. */
  private statusLine(extra?: string): string {
    const note = [this.note, extra].filter((n) => n !== undefined).join("; ");
    const text = formatStatus(this.pool, note === "" ? undefined : note);
    return text === this.lastStatus ? "" : `STATUS=${text}`;
  }

  private send(message: string): void {
    const socket = this.socket;
    if (socket === undefined || this.closed) return;
    try {
      socket.send(message);
    } catch (error) {
      this.reportFailure(error);
      return;
    }
    // Remembered only once delivered: a status lost to a broken socket is sent again later.
    const status = /(?:^|\n)STATUS=([^\n]*)/.exec(message);
    if (status !== null) this.lastStatus = status[1];
    if (this.failing) {
      this.failing = false;
      this.logger.info({ notify_socket: describeAddress(socket.address), failed_sends: this.failures }, "systemd: the notify socket works again");
    }
  }

  // Once per outage: a vanished socket must not flood the log once per status change.
  private reportFailure(error: unknown): void {
    this.failures++;
    if (this.failing) return;
    this.failing = true;
    const code = error instanceof NotifySocketError ? error.code : "UNKNOWN";
    this.logger.warn(
      { code, err: describe(error), notify_socket: this.socket === undefined ? (this.options.env ?? process.env).NOTIFY_SOCKET : describeAddress(this.socket.address) },
      "systemd: cannot notify the service manager (calls are not affected; status, readiness and stop extensions are not delivered)",
    );
  }

  private stopTimers(): void {
    if (this.extendTimer !== undefined) clearTimeout(this.extendTimer);
    if (this.ceilingTimer !== undefined) clearTimeout(this.ceilingTimer);
    if (this.watchdogTimer !== undefined) clearInterval(this.watchdogTimer);
    this.extendTimer = undefined;
    this.ceilingTimer = undefined;
    this.watchdogTimer = undefined;
    this.stopped = true;
  }
}

/** CLOCK_MONOTONIC in µs, as systemd wants in `MONOTONIC_USEC=`: libuv's hrtime reads that clock on Linux. */
function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
