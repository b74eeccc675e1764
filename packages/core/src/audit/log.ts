import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.ts";
import { systemClock } from "../clock.ts";
import { GENESIS_HASH } from "./hash.ts";
import { CHECKPOINT_EVENT, CHECKPOINT_SIGNATURE_EVENT, CheckpointSigner } from "./checkpoint.ts";
import type { AuditCheckpointOptions } from "./checkpoint.ts";
import { AuditSinkTimeoutError, describeError, withDeadline } from "./errors.ts";
import { onProcessExit } from "./exit.ts";
import { AuditEventType, buildRecord } from "./record.ts";
import type { AuditEmitFields, AuditRecord } from "./record.ts";
import { SinkDelivery } from "./delivery.ts";
import type { AuditChainHead, AuditSink } from "./delivery.ts";

export { AuditEventType } from "./record.ts";
export type { AuditEmitFields, AuditRecord } from "./record.ts";
export type { AuditChainHead, AuditSink } from "./delivery.ts";
export { AuditSinkTimeoutError } from "./errors.ts";

/** Observers of the log. Each call is isolated: a hook that throws changes nothing. */
export interface AuditHooks {
  /** Called synchronously by `emit` with the record just chained (e.g. count events). */
  onEmit?(record: AuditRecord): void;
  /** A sink's write threw, rejected or timed out; the batch is kept and retried. */
  onSinkError?(sinkName: string, error: unknown): void;
  /** `count` records will never reach this sink (its queue was full, or the log was closed). */
  onDropped?(sinkName: string, count: number): void;
  /** A signed checkpoint was written: keep the latest one apart from the log (see `expectCheckpoint`). */
  onCheckpoint?(record: AuditRecord): void;
}

export interface AuditLogOptions {
  sinks?: readonly AuditSink[];
  /**
   * Names this writer's chain. Default `${hostname}-${pid}-${8 random hex}`, unique per instance.
   * A fixed origin (one per worker identity) lets the chain run on across restarts: see `resumeFrom`.
   */
  origin?: string;
  clock?: Clock;
  /** Default `version` of every record (the worker's deployment_version); may be null. */
  version?: string | null;
  /** Per-sink bound on records not yet acknowledged (queued + in flight). Default 10_000. */
  maxQueue?: number;
  /** Most records handed to one `write` call. Default 1_000. */
  maxBatch?: number;
  /**
   * A write not settled after this many ms counts as failed and is retried (0 disables).
   * Default 30_000. The timed-out write is abandoned, not cancelled: if it later completes, the
   * sink has seen that batch twice, so a sink whose writes may hang must be idempotent on
   * (origin, seq) (the file and S3 sinks are). Without a timeout a hung write stalls only its own sink.
   */
  writeTimeoutMs?: number;
  /** Retry backoff after a failed write: doubles from `initialMs` up to `maxMs`. Default 100 / 30_000. */
  retry?: { initialMs?: number; maxMs?: number };
  hooks?: AuditHooks;
  /** Signed checkpoints in the chain (see `checkpoint.ts`). Default: none. */
  checkpoint?: AuditCheckpointOptions;
  /**
   * Continue an existing chain instead of starting one: the next record gets `seq + 1` and
   * `prev_hash = hash`, under this origin. Without it, a log with a fixed `origin` asks each
   * sink's `chainHead(origin)` and continues from the furthest one, so a restart needs no user
   * code. Only one live writer may use an origin at a time.
   */
  resumeFrom?: AuditChainHead;
  /**
   * Flush synchronously to every sink with `writeSync` on `process.exit()` and on an uncaught
   * exception (default true). `close()` unregisters it.
   */
  flushOnExit?: boolean;
}

export interface AuditSinkStats {
  name: string;
  /** Records acknowledged by the sink. */
  delivered: number;
  /** Records queued or in flight, not yet acknowledged. */
  pending: number;
  /** Records this sink will never receive (queue overflow, or emitted after close). */
  dropped: number;
  /** Failed write attempts (throw, rejection, timeout) and failed flush/close calls. */
  errors: number;
  lastError: string | null;
}

export interface AuditLogStats {
  origin: string;
  /** `seq` of the last record emitted (0 before the first). */
  seq: number;
  sinks: AuditSinkStats[];
}

export interface AuditFlushOptions {
  /** Give up waiting after this many ms and report what is still undelivered. Default: wait. */
  timeoutMs?: number;
}

export interface AuditUndelivered {
  sink: string;
  /** Records emitted before the flush call that the sink has not acknowledged. */
  pending: number;
  /** Records the sink dropped so far (never delivered; each loss is reported by an `audit.records_dropped` record). */
  dropped: number;
  /** True while a loss is not yet accounted for by a delivered `audit.records_dropped` record. */
  unrecordedLoss: boolean;
  lastError: string | null;
}

export interface AuditFlushResult {
  /**
   * True when, now, every sink holds every record emitted before the call, or a delivered
   * `audit.records_dropped` record that accounts for what it lost. A past overflow that was
   * recorded does not keep this false.
   */
  ok: boolean;
  undelivered: AuditUndelivered[];
}

/** Returns true (and resolves its promise) once its sink caught up. */
interface FlushWaiter {
  caughtUp: () => boolean;
  /** The flush call that waits, so a timed-out flush can withdraw its waiters. */
  owner: object;
}

/**
 * Tamper-evident audit log: every record is chained to the previous one of the same origin by
 * SHA-256 and delivered to each sink in `seq` order, in batches, in the background.
 *
 * `emit` never throws and never waits: hostile values are coerced or marked, never allowed to
 * break the record or the chain. A field's value: bigint → decimal string, non-finite number →
 * "NaN"/"Infinity"/"-Infinity", function/symbol → "[unserializable function]"/"[… symbol]",
 * `undefined` → field omitted. Inside objects JSON's own rules apply (non-finite → null,
 * functions dropped), plus bigint → string, circular reference → "[Circular]", throwing
 * getter/toJSON → "[unserializable: <message>]". Object values are deep-copied through JSON at
 * emit time (and frozen), so later mutation by the caller cannot desynchronise a record from its
 * hash. `actor`/`target`/`result`/`version` are coerced to strings. A field named like a record
 * or chain field (`seq`, `timestamp`, `event`, `origin`, `prev_hash`, `hash`) is moved into
 * `field_conflicts` instead of overwriting it.
 *
 * Each sink has its own bounded queue: a slow, failing or hung sink affects only itself. A
 * failed write is retried with exponential backoff with the same records first (nothing is
 * skipped, nothing reordered). Overflow beyond `maxQueue` drops the newest records for that sink,
 * and the loss is recorded, never silent: once the sink has room again the log writes a chained
 * `audit.records_dropped` record (sink, `dropped_first_seq`..`dropped_last_seq`,
 * `dropped_prev_hash`) that the sink receives right after the hole, so the verifier reports the
 * hole as `overflow` instead of deletion; drops are also counted in `stats()` and reported to
 * `hooks.onDropped`. Timers are unref'd: pending delivery never keeps a process alive by itself,
 * so call `close()` (or `flush()`) before exiting; `process.exit()` and an uncaught exception get
 * a synchronous last flush to every sink that has `writeSync` (see `flushSync`).
 */
export class AuditLog {
  readonly origin: string;
  #version: string | null;
  readonly #clock: Clock;
  readonly #hooks: AuditHooks;
  readonly #sinks: SinkDelivery[];
  readonly #maxQueue: number;
  readonly #maxBatch: number;
  readonly #writeTimeoutMs: number;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #quotedOrigin: string;
  #seq = 0;
  #lastHash = GENESIS_HASH;
  #scheduled = false;
  #inOnEmit = false;
  #closed = false;
  #closing: Promise<AuditFlushResult> | undefined;
  #waiters: FlushWaiter[] = [];
  readonly #signer: CheckpointSigner | undefined;
  #sinceCheckpoint = 0;
  #checkpointTimer: NodeJS.Timeout | undefined;
  /** External signatures not yet written (close waits for them). */
  readonly #signing = new Set<Promise<void>>();
  #unregisterExit: (() => void) | undefined;

  constructor(options: AuditLogOptions = {}) {
    const sinks = options.sinks ?? [];
    const names = new Set<string>();
    for (const sink of sinks) {
      if (!sink || typeof sink.name !== "string" || sink.name === "" || typeof sink.write !== "function") {
        throw new TypeError("AuditLog: every sink needs a non-empty string `name` and a `write(records)` method");
      }
      if (names.has(sink.name)) {
        throw new TypeError(`AuditLog: two sinks are named "${sink.name}"; sink names must be unique (stats and metrics key on them)`);
      }
      names.add(sink.name);
    }
    const given = options.resumeFrom;
    this.origin = options.origin ?? given?.origin ?? `${safeHostname()}-${process.pid}-${randomBytes(4).toString("hex")}`;
    if (typeof this.origin !== "string" || this.origin === "") {
      throw new TypeError("AuditLog: `origin` must be a non-empty string");
    }
    // A fixed origin without an explicit resume point continues where the sinks say it stands.
    const resume = given ?? (options.origin === undefined ? undefined : furthestHead(sinks, this.origin));
    if (resume !== undefined) {
      if (resume === null || typeof resume !== "object" || !Number.isSafeInteger(resume.seq) || resume.seq < 0 || typeof resume.hash !== "string" || !/^[0-9a-f]{64}$/.test(resume.hash)) {
        throw new TypeError("AuditLog: `resumeFrom` must be the chain's last record (origin, seq ≥ 0, 64-hex hash)");
      }
      if (resume.origin !== this.origin) {
        throw new TypeError(`AuditLog: cannot resume origin "${String(resume.origin)}" as origin "${this.origin}"; a chain continues only under its own origin`);
      }
      this.#seq = resume.seq;
      this.#lastHash = resume.hash;
    }
    this.#quotedOrigin = JSON.stringify(this.origin);
    if (options.version !== undefined && options.version !== null && typeof options.version !== "string") {
      throw new TypeError(`AuditLog: \`version\` must be a string or null (the deployment_version), got ${typeof options.version}`);
    }
    this.#version = options.version ?? null;
    this.#clock = options.clock ?? systemClock;
    this.#hooks = options.hooks ?? {};
    this.#maxQueue = positiveInt(options.maxQueue, 10_000, "maxQueue");
    this.#maxBatch = positiveInt(options.maxBatch, 1_000, "maxBatch");
    this.#writeTimeoutMs = nonNegative(options.writeTimeoutMs, 30_000, "writeTimeoutMs");
    this.#retryInitialMs = nonNegative(options.retry?.initialMs, 100, "retry.initialMs");
    this.#retryMaxMs = nonNegative(options.retry?.maxMs, 30_000, "retry.maxMs");
    this.#sinks = sinks.map((sink) => new SinkDelivery(sink));
    if (options.checkpoint !== undefined) {
      this.#signer = new CheckpointSigner(options.checkpoint);
      const interval = this.#signer.intervalSeconds;
      if (interval !== undefined) {
        this.#checkpointTimer = setInterval(() => this.checkpoint(), interval * 1000);
        this.#checkpointTimer.unref();
      }
    }
    if (options.flushOnExit !== false && sinks.some((s) => typeof s.writeSync === "function")) {
      this.#unregisterExit = onProcessExit(() => this.flushSync());
    }
  }

  /** `seq` of the last record emitted (0 before the first). */
  get seq(): number {
    return this.#seq;
  }

  /** `hash` of the last record emitted (`GENESIS_HASH` before the first). */
  get headHash(): string {
    return this.#lastHash;
  }

  /** Chains and returns the record at once; delivery to sinks happens in the background. */
  /** Default `version` of every record (the worker's deployment_version); null when untagged. */
  get version(): string | null {
    return this.#version;
  }

  /**
   * Sets the default version of the records that follow, once, for a log created before its
   * worker's version was known (`AgentPool.adopt`). Records already written keep theirs.
   */
  adoptVersion(version: string): void {
    if (this.#version !== null) throw new Error(`AuditLog.adoptVersion: the log already tags its records ${JSON.stringify(this.#version)}`);
    if (typeof version !== "string" || version === "") throw new TypeError("AuditLog.adoptVersion: version must be a non-empty string");
    this.#version = version;
  }

  emit(type: string, fields?: AuditEmitFields): AuditRecord {
    let record: AuditRecord;
    try {
      record = this.#chain(type, fields, false, false);
    } catch (error) {
      // Only reachable through something as odd as a hostile Proxy; still write a record.
      record = this.#chain(type, { emit_error: describeError(error) }, true, false);
    }
    this.#dispatch(record);
    if (this.#signer) {
      this.#sinceCheckpoint++;
      if (this.#signer.every !== undefined && this.#sinceCheckpoint >= this.#signer.every) this.#schedule();
    }
    return record;
  }

  /**
   * Writes a checkpoint covering every record so far, now, and returns it; undefined when
   * checkpoints are not configured or nothing was emitted since the last one. Local keys sign it
   * inline; an external `signer` signs it asynchronously and its signature follows as an
   * `audit.checkpoint_signature` record. The log also calls this every `checkpoint.every`
   * records (at the next delivery turn, keeping `emit` cheap), every
   * `checkpoint.intervalSeconds`, and in `close`.
   */
  checkpoint(): AuditRecord | undefined {
    const signer = this.#signer;
    if (!signer || this.#sinceCheckpoint === 0) return undefined;
    const size = this.#seq;
    const head = this.#lastHash;
    const time = this.#now();
    let signature: Record<string, string>;
    try {
      signature = signer.sign(this.origin, size, head, time);
    } catch (error) {
      signature = { sign_error: describeError(error) };
    }
    const record = this.#chain(CHECKPOINT_EVENT, { checkpoint_size: size, checkpoint_head: head, checkpoint_time: time, ...signature }, false, true, time);
    this.#sinceCheckpoint = 0;
    this.#dispatch(record);
    if (signer.external !== undefined) this.#signExternally(signer, record, size, head, time);
    else this.#checkpointHook(record);
    return record;
  }

  #signExternally(signer: CheckpointSigner, checkpoint: AuditRecord, size: number, head: string, time: number): void {
    const work = signer.signExternally(this.origin, size, head, time).then(
      (fields) => fields,
      (error: unknown) => ({ sign_error: describeError(error) }) as Record<string, string>,
    ).then((fields) => {
      const record = this.#chain(CHECKPOINT_SIGNATURE_EVENT, {
        result: fields.sign_error === undefined ? "ok" : "error",
        checkpoint_seq: checkpoint.seq,
        checkpoint_size: size,
        checkpoint_head: head,
        checkpoint_time: time,
        ...fields,
      }, false, true);
      this.#dispatch(record);
      if (fields.sign_error === undefined) this.#checkpointHook(record);
    });
    this.#signing.add(work);
    void work.finally(() => this.#signing.delete(work));
  }

  #checkpointHook(record: AuditRecord): void {
    const onCheckpoint = this.#hooks.onCheckpoint;
    if (!onCheckpoint) return;
    try {
      onCheckpoint.call(this.#hooks, record);
    } catch {
      // hooks are observers
    }
  }

  stats(): AuditLogStats {
    return {
      origin: this.origin,
      seq: this.#seq,
      sinks: this.#sinks.map((s) => ({
        name: s.sink.name,
        delivered: s.delivered,
        pending: s.queue.size,
        dropped: s.dropped,
        errors: s.errors,
        lastError: s.lastError,
      })),
    };
  }

  /**
   * Resolves once every sink acknowledged every record emitted before this call (then each sink's
   * own `flush` ran), or once `timeoutMs` passed. A sink in retry backoff retries at once. Never
   * rejects; the result names what was not delivered.
   */
  async flush(options: AuditFlushOptions = {}): Promise<AuditFlushResult> {
    const target = this.#seq;
    // A sink waiting out a retry backoff tries again now: whoever flushes (often shutdown) is
    // waiting for exactly that.
    for (const s of this.#sinks) {
      if (s.retryTimer !== undefined) {
        clearTimeout(s.retryTimer);
        s.retryTimer = undefined;
        this.#startWrite(s);
      }
    }
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + Math.max(0, options.timeoutMs);
    const owner = {};
    const acked = Promise.all(this.#sinks.map((s) => this.#waitFor(s, target, owner)));
    const inTime = await withDeadline(acked, deadline);
    if (inTime) {
      await withDeadline(Promise.all(this.#sinks.map((s) => this.#callSink(s, "flush"))), deadline);
    } else {
      this.#waiters = this.#waiters.filter((w) => w.owner !== owner);
    }
    return this.#flushResult(target);
  }

  /**
   * Hands every record not yet acknowledged to each sink's `writeSync`, synchronously: the last
   * thing to call before the process exits (`process.exit`, a fatal error, the lifecycle's forced
   * exit). Runs by itself on `process.exit()` and uncaught exceptions (see `flushOnExit`). Sinks
   * without `writeSync` are skipped. Never throws; returns what could not be written.
   */
  flushSync(): AuditFlushResult {
    for (const s of this.#sinks) {
      const writeSync = s.sink.writeSync;
      if (typeof writeSync !== "function" || s.closed || s.queue.size === 0) continue;
      const batch = s.queue.peek(s.queue.size);
      try {
        writeSync.call(s.sink, batch);
      } catch (error) {
        s.errors++;
        s.lastError = describeError(error);
        continue;
      }
      // The async write in flight (if any) is abandoned: its records are written now.
      s.attempt++;
      s.inFlight = 0;
      s.clearTimers();
      s.queue.drop(batch.length);
      s.delivered += batch.length;
    }
    this.#checkWaiters();
    return this.#flushResult(this.#seq);
  }

  /**
   * Flushes (by default waiting at most 10 s, so shutdown cannot hang on a dead sink), then
   * closes every sink. Records emitted after `close` are still returned and chained but never
   * delivered (counted as dropped). Idempotent: later calls return the first call's result.
   */
  close(options: AuditFlushOptions = {}): Promise<AuditFlushResult> {
    this.#closing ??= this.#close(options.timeoutMs ?? 10_000);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<AuditFlushResult> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    clearInterval(this.#checkpointTimer);
    this.checkpoint();
    // An external signature in progress is part of the log: wait for it (bounded).
    if (this.#signing.size > 0) await withDeadline(Promise.all(this.#signing), deadline);
    for (const s of this.#sinks) this.#recordLoss(s);
    const result = await this.flush({ timeoutMs: Math.max(0, deadline - Date.now()) });
    this.#closed = true;
    this.#unregisterExit?.();
    await withDeadline(
      Promise.all(this.#sinks.map((s) => this.#callSink(s, "close"))),
      Math.max(deadline, Date.now() + 1),
    );
    for (const s of this.#sinks) {
      s.closed = true;
      s.clearTimers();
    }
    this.#checkWaiters(); // a flush still waiting on a dead sink ends now
    return result;
  }

  /** Builds the next record of the chain and advances the head. */
  #chain(type: unknown, fields: unknown, fallback: boolean, internal: boolean, timestamp = this.#now()): AuditRecord {
    const record = buildRecord(
      { origin: this.origin, quotedOrigin: this.#quotedOrigin, seq: this.#seq + 1, prevHash: this.#lastHash, timestamp, defaultVersion: this.#version },
      type,
      fields,
      fallback,
      internal,
    );
    this.#seq = record.seq;
    this.#lastHash = record.hash;
    return record;
  }

  #now(): number {
    try {
      const t = this.#clock();
      if (typeof t === "number" && Number.isFinite(t)) return t;
    } catch {
      // fall through: a broken clock must not lose the record
    }
    return Date.now() / 1000;
  }

  #dispatch(record: AuditRecord, markerFor?: SinkDelivery): void {
    const onEmit = this.#hooks.onEmit;
    // A hook that emits would otherwise recurse without end: its own records skip the hook.
    if (onEmit && !this.#inOnEmit) {
      this.#inOnEmit = true;
      try {
        onEmit.call(this.#hooks, record);
      } catch {
        // hooks are observers; they cannot affect the log
      } finally {
        this.#inOnEmit = false;
      }
    }
    let drops = false;
    for (const s of this.#sinks) {
      if (s === markerFor) s.takeMarker(record);
      else if (!s.offer(record, this.#maxQueue, this.#closed)) drops = true;
    }
    if (this.#sinks.length > 0 || drops) this.#schedule();
  }

  /**
   * Writes the `audit.records_dropped` record that accounts for a sink's overflow, as soon as the
   * sink has room: it is the first record that sink gets after the hole, so the verifier finds
   * the explanation exactly where the hole is.
   */
  #recordLoss(s: SinkDelivery): void {
    const lost = s.lost;
    if (lost === undefined || s.closed || this.#closed || s.queue.size >= this.#maxQueue) return;
    const record = this.#chain(AuditEventType.RecordsDropped, {
      result: "dropped",
      target: s.sink.name,
      sink: s.sink.name,
      dropped_first_seq: lost.first,
      dropped_last_seq: lost.last,
      dropped_count: lost.last - lost.first + 1,
      dropped_prev_hash: lost.prevHash,
      reason: "queue_full",
    }, false, true);
    this.#dispatch(record, s);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#pump);
  }

  /** One microtask per burst of emits: report drops, then start a write on every idle sink. */
  readonly #pump = (): void => {
    this.#scheduled = false;
    const every = this.#signer?.every;
    if (every !== undefined && this.#sinceCheckpoint >= every) this.checkpoint();
    for (const s of this.#sinks) {
      if (s.unreportedDrops > 0) {
        const count = s.unreportedDrops;
        s.unreportedDrops = 0;
        this.#hook("onDropped", s.sink.name, count);
      }
      this.#startWrite(s);
    }
  };

  #startWrite(s: SinkDelivery): void {
    if (s.closed || s.inFlight > 0 || s.retryTimer !== undefined) return;
    if (s.queue.size === 0) return;
    const batch = s.queue.peek(this.#maxBatch);
    const n = batch.length;
    const attempt = ++s.attempt;
    s.inFlight = n;
    let settled: Promise<void>;
    try {
      settled = Promise.resolve(s.sink.write(batch));
    } catch (error) {
      settled = Promise.reject(error);
    }
    settled.then(
      () => this.#written(s, attempt, n),
      (error: unknown) => this.#failed(s, attempt, error),
    );
    if (this.#writeTimeoutMs > 0) {
      s.writeTimer = setTimeout(() => {
        this.#failed(s, attempt, new AuditSinkTimeoutError(`audit sink "${s.sink.name}" did not settle a write of ${n} records within ${this.#writeTimeoutMs} ms`));
      }, this.#writeTimeoutMs);
      s.writeTimer.unref();
    }
  }

  #written(s: SinkDelivery, attempt: number, n: number): void {
    if (attempt !== s.attempt || s.inFlight === 0) return;
    clearTimeout(s.writeTimer);
    s.writeTimer = undefined;
    s.inFlight = 0;
    s.failures = 0;
    s.queue.drop(n);
    s.delivered += n;
    this.#recordLoss(s);
    this.#checkWaiters();
    this.#startWrite(s);
  }

  #failed(s: SinkDelivery, attempt: number, error: unknown): void {
    if (attempt !== s.attempt || s.inFlight === 0) return;
    clearTimeout(s.writeTimer);
    s.writeTimer = undefined;
    s.inFlight = 0;
    // The records stay at the head of the queue: the retry sends them again, in order.
    s.attempt++;
    s.errors++;
    s.failures++;
    s.lastError = describeError(error);
    this.#hook("onSinkError", s.sink.name, error);
    if (s.closed) return;
    const delay = Math.min(this.#retryMaxMs, this.#retryInitialMs * 2 ** Math.min(s.failures - 1, 30));
    s.retryTimer = setTimeout(() => {
      s.retryTimer = undefined;
      this.#startWrite(s);
    }, delay);
    s.retryTimer.unref();
  }

  #hook(name: "onSinkError" | "onDropped", sinkName: string, arg: unknown): void {
    const hook = this.#hooks[name] as ((sink: string, arg: unknown) => void) | undefined;
    if (!hook) return;
    try {
      hook.call(this.#hooks, sinkName, arg);
    } catch {
      // hooks are observers; they cannot affect delivery
    }
  }

  #waitFor(s: SinkDelivery, target: number, owner: object): Promise<void> {
    if (s.caughtUp(target)) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push({
        owner,
        caughtUp: () => {
          if (!s.caughtUp(target)) return false;
          resolve();
          return true;
        },
      });
    });
  }

  #checkWaiters(): void {
    if (this.#waiters.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => !w.caughtUp());
  }

  async #callSink(s: SinkDelivery, method: "flush" | "close"): Promise<void> {
    const fn = s.sink[method];
    if (typeof fn !== "function") return;
    try {
      await fn.call(s.sink);
    } catch (error) {
      s.errors++;
      s.lastError = describeError(error);
      this.#hook("onSinkError", s.sink.name, error);
    }
  }

  #flushResult(target: number): AuditFlushResult {
    const undelivered: AuditUndelivered[] = [];
    for (const s of this.#sinks) {
      const pending = s.pendingUpTo(target);
      const unrecordedLoss = s.unrecordedLoss;
      if (pending > 0 || unrecordedLoss) {
        undelivered.push({ sink: s.sink.name, pending, dropped: s.dropped, unrecordedLoss, lastError: s.lastError });
      }
    }
    return { ok: undelivered.length === 0, undelivered };
  }
}

/** The furthest point any sink says the origin's chain reached (a sink that throws is skipped). */
function furthestHead(sinks: readonly AuditSink[], origin: string): AuditChainHead | undefined {
  let best: AuditChainHead | undefined;
  for (const sink of sinks) {
    if (typeof sink.chainHead !== "function") continue;
    let head: AuditChainHead | undefined;
    try {
      head = sink.chainHead(origin);
    } catch {
      continue; // a sink that cannot tell is a sink that cannot help; the others still can
    }
    if (head !== undefined && head !== null && head.origin === origin && (best === undefined || head.seq > best.seq)) best = head;
  }
  return best;
}

function safeHostname(): string {
  try {
    return hostname() || "host";
  } catch {
    return "host";
  }
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`AuditLog: \`${name}\` must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`AuditLog: \`${name}\` must be a finite number ≥ 0 (ms), got ${String(value)}`);
  }
  return value;
}
