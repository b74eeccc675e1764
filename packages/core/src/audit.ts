import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Clock } from "./clock.ts";
import { systemClock } from "./clock.ts";
import { GENESIS_HASH, sha256Hex } from "./audit-hash.ts";
import { CHECKPOINT_EVENT, CheckpointSigner } from "./audit-checkpoint.ts";
import { rememberAuditLine } from "./audit-line.ts";
import { RecordQueue } from "./audit-queue.ts";
import type { AuditCheckpointOptions } from "./audit-checkpoint.ts";

/** Event types the product writes. Users may emit their own dotted names too. */
export const AuditEventType = {
  DeploymentStarted: "deployment.started",
  DeploymentCompleted: "deployment.completed",
  DrainStarted: "deployment.drain_started",
  RolledBack: "deployment.rolled_back",
  WorkerRejected: "worker.rejected",
  DrainCompleted: "deployment.drain_completed",
  DrainStuck: "deployment.drain_stuck",
  WorkerExited: "worker.exited",
  MembershipChanged: "worker.membership_changed",
  /** Written by the log itself (signed checkpoints); a caller's `emit` of it is renamed. */
  Checkpoint: "audit.checkpoint",
  /** What a caller's `emit("audit.checkpoint")` becomes (the name is in `field_conflicts.event`). */
  ReservedEvent: "audit.reserved_event",
} as const;

/**
 * One audit record, exactly as written (one JSON object a line in files). The extra fields
 * passed to `emit` sit flat beside these.
 *
 * Key order as written: `seq, timestamp, event, actor, target, result, version`, the extra
 * fields in the caller's order (then `field_conflicts` when there were any), then
 * `origin, prev_hash, hash`. `JSON.stringify(record)` is the line; `hash` covers the line
 * without `hash` (see `audit-hash.ts` for the exact canonical form). Records are frozen.
 */
export interface AuditRecord {
  seq: number;
  timestamp: number;
  event: string;
  actor: string;
  target: string;
  result: string;
  version: string | null;
  origin: string;
  prev_hash: string;
  hash: string;
  [field: string]: unknown;
}

export interface AuditEmitFields {
  actor?: string;
  target?: string;
  result?: string;
  version?: string | null;
  [field: string]: unknown;
}

/**
 * Where audit records go. `write` receives a batch in `seq` order; its promise resolving is the
 * acknowledgement of delivery (a durable sink resolves only once the batch is durable).
 */
export interface AuditSink {
  readonly name: string;
  write(records: readonly AuditRecord[]): Promise<void>;
  flush?(): Promise<void>;
  close?(): Promise<void>;
}

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
  /** Names this writer's chain. Default `${hostname}-${pid}-${8 random hex}`, unique per instance. */
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
   * sink has seen that batch twice, so a sink whose writes may hang should be idempotent on
   * (origin, seq). Without a timeout a hung write stalls only its own sink.
   */
  writeTimeoutMs?: number;
  /** Retry backoff after a failed write: doubles from `initialMs` up to `maxMs`. Default 100 / 30_000. */
  retry?: { initialMs?: number; maxMs?: number };
  hooks?: AuditHooks;
  /** Signed checkpoints in the chain (see `audit-checkpoint.ts`). Default: none. */
  checkpoint?: AuditCheckpointOptions;
  /**
   * Continue an existing chain instead of starting one: the next record gets `seq + 1` and
   * `prev_hash = hash`, under this origin (e.g. a durable sink's last record after a restart,
   * when the worker keeps a fixed `origin`). Only one live writer may use an origin at a time.
   */
  resumeFrom?: Pick<AuditRecord, "origin" | "seq" | "hash">;
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
  /** Records the sink dropped so far (never delivered). */
  dropped: number;
  lastError: string | null;
}

export interface AuditFlushResult {
  /** True when every sink acknowledged every record emitted before the call and dropped none. */
  ok: boolean;
  undelivered: AuditUndelivered[];
}

/** A sink's write did not settle within `writeTimeoutMs`. */
export class AuditSinkTimeoutError extends Error {
  override name = "AuditSinkTimeoutError";
}

interface SinkState {
  sink: AuditSink;
  /** Pending records, oldest first; the first `inFlight` are being written. */
  queue: RecordQueue<AuditRecord>;
  inFlight: number;
  /** Increments per write attempt, so a late settle of an abandoned attempt is ignored. */
  attempt: number;
  writeTimer: NodeJS.Timeout | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  failures: number;
  delivered: number;
  dropped: number;
  unreportedDrops: number;
  errors: number;
  lastError: string | null;
  closed: boolean;
}

/** Returns true (and resolves its promise) once its sink caught up. */
interface FlushWaiter {
  caughtUp: () => boolean;
  /** The flush call that waits, so a timed-out flush can withdraw its waiters. */
  owner: object;
}

const CORE_FIELDS = new Set(["actor", "target", "result", "version"]);
/** Extra fields with these names would corrupt the record or chain: they go to `field_conflicts`. */
const RESERVED_FIELDS = new Set([
  "seq",
  "timestamp",
  "event",
  "origin",
  "prev_hash",
  "hash",
  "field_conflicts",
]);
const MAX_DEPTH = 64;
/** Array-index keys: JS objects enumerate them first, whatever the insertion order. */
const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;
/** Strings JSON.stringify writes verbatim between quotes. */
const PLAIN_STRING = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

function quote(s: string): string {
  return PLAIN_STRING.test(s) ? `"${s}"` : JSON.stringify(s);
}

const KEY_CORE = 0; // actor/target/result/version: read separately
const KEY_RESERVED = 1; // would overwrite a record or chain field: goes to field_conflicts
const KEY_PLAIN = 2;
const KEY_ODD = 3; // array index (enumerated first) or __proto__ (needs defineProperty)

interface KeyInfo {
  kind: number;
  quoted: string;
}

/** Callers reuse a handful of field names: classify and quote each once (bounded cache). */
const keyInfos = new Map<string, KeyInfo>();

function keyInfo(key: string): KeyInfo {
  let info = keyInfos.get(key);
  if (info === undefined) {
    const kind =
      CORE_FIELDS.has(key) ? KEY_CORE
      : RESERVED_FIELDS.has(key) ? KEY_RESERVED
      : INDEX_KEY.test(key) || key === "__proto__" ? KEY_ODD
      : KEY_PLAIN;
    info = { kind, quoted: quote(key) };
    if (keyInfos.size < 4096) keyInfos.set(key, info);
  }
  return info;
}

/** `value` is already sanitized: a string, finite number, boolean, null or frozen JSON data. */
function jsonValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return quote(value);
    case "number":
    case "boolean":
      return String(value);
    default:
      return JSON.stringify(value);
  }
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
 * skipped, nothing reordered); overflow beyond `maxQueue` drops the newest records for that sink,
 * counted in `stats()` and reported to `hooks.onDropped`. Timers are unref'd: pending delivery
 * never keeps a process alive by itself, so call `close()` (or `flush()`) before exiting.
 */
export class AuditLog {
  readonly origin: string;
  readonly version: string | null;
  readonly #clock: Clock;
  readonly #hooks: AuditHooks;
  readonly #sinks: SinkState[];
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
    const resume = options.resumeFrom;
    this.origin = options.origin ?? resume?.origin ?? `${safeHostname()}-${process.pid}-${randomBytes(4).toString("hex")}`;
    if (typeof this.origin !== "string" || this.origin === "") {
      throw new TypeError("AuditLog: `origin` must be a non-empty string");
    }
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
    this.version = options.version ?? null;
    this.#clock = options.clock ?? systemClock;
    this.#hooks = options.hooks ?? {};
    this.#maxQueue = positiveInt(options.maxQueue, 10_000, "maxQueue");
    this.#maxBatch = positiveInt(options.maxBatch, 1_000, "maxBatch");
    this.#writeTimeoutMs = nonNegative(options.writeTimeoutMs, 30_000, "writeTimeoutMs");
    this.#retryInitialMs = nonNegative(options.retry?.initialMs, 100, "retry.initialMs");
    this.#retryMaxMs = nonNegative(options.retry?.maxMs, 30_000, "retry.maxMs");
    this.#sinks = sinks.map((sink) => ({
      sink,
      queue: new RecordQueue<AuditRecord>(),
      inFlight: 0,
      attempt: 0,
      writeTimer: undefined,
      retryTimer: undefined,
      failures: 0,
      delivered: 0,
      dropped: 0,
      unreportedDrops: 0,
      errors: 0,
      lastError: null,
      closed: false,
    }));
    if (options.checkpoint !== undefined) {
      this.#signer = new CheckpointSigner(options.checkpoint);
      const interval = this.#signer.intervalSeconds;
      if (interval !== undefined) {
        this.#checkpointTimer = setInterval(() => this.checkpoint(), interval * 1000);
        this.#checkpointTimer.unref();
      }
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
  emit(type: string, fields?: AuditEmitFields): AuditRecord {
    let record: AuditRecord;
    try {
      record = this.#build(type, fields, false, false);
    } catch (error) {
      // Only reachable through something as odd as a hostile Proxy; still write a record.
      record = this.#build(type, { emit_error: describeError(error) }, true, false);
    }
    this.#dispatch(record);
    if (this.#signer) {
      this.#sinceCheckpoint++;
      if (this.#signer.every !== undefined && this.#sinceCheckpoint >= this.#signer.every) this.#schedule();
    }
    return record;
  }

  /**
   * Writes a signed checkpoint covering every record so far, now, and returns it; undefined when
   * checkpoints are not configured or nothing was emitted since the last one. The log also
   * calls this every `checkpoint.every` records (at the next delivery turn, keeping `emit`
   * cheap), every `checkpoint.intervalSeconds`, and in `close`.
   */
  checkpoint(): AuditRecord | undefined {
    const signer = this.#signer;
    if (!signer || this.#sinceCheckpoint === 0) return undefined;
    const size = this.#seq;
    const head = this.#lastHash;
    let signature: Record<string, string>;
    try {
      signature = signer.sign(this.origin, size, head);
    } catch (error) {
      signature = { sign_error: describeError(error) };
    }
    const record = this.#build(CHECKPOINT_EVENT, { checkpoint_size: size, checkpoint_head: head, ...signature }, false, true);
    this.#sinceCheckpoint = 0;
    this.#dispatch(record);
    const onCheckpoint = this.#hooks.onCheckpoint;
    if (onCheckpoint) {
      try {
        onCheckpoint.call(this.#hooks, record);
      } catch {
        // hooks are observers
      }
    }
    return record;
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
    clearInterval(this.#checkpointTimer);
    this.checkpoint();
    const result = await this.flush({ timeoutMs });
    this.#closed = true;
    const deadline = started + timeoutMs;
    await withDeadline(
      Promise.all(this.#sinks.map((s) => this.#callSink(s, "close"))),
      Math.max(deadline, Date.now() + 1),
    );
    for (const s of this.#sinks) {
      s.closed = true;
      clearTimeout(s.retryTimer);
      clearTimeout(s.writeTimer);
      s.retryTimer = undefined;
      s.writeTimer = undefined;
    }
    this.#checkWaiters(); // a flush still waiting on a dead sink ends now
    return result;
  }

  #build(type: unknown, fields: unknown, fallback: boolean, internal: boolean): AuditRecord {
    const seq = this.#seq + 1;
    const f = (fields !== null && typeof fields === "object" ? fields : {}) as Record<string, unknown>;
    const timestamp = this.#now();
    let event = toText(type, "");
    let conflicts: Record<string, unknown> | undefined;
    if (event === CHECKPOINT_EVENT && !internal) {
      // Only the log writes checkpoints: a caller's would look like an unverifiable one.
      conflicts = { event };
      event = AuditEventType.ReservedEvent;
    }
    const actor = toText(f.actor, "system");
    const target = toText(f.target, "");
    const result = toText(f.result, "ok");
    const version = f.version === undefined ? this.version : f.version === null ? null : toText(f.version, "");
    const record: Record<string, unknown> = { seq, timestamp, event, actor, target, result, version };
    // The canonical text is built alongside the object: the same bytes JSON.stringify(record)
    // gives, at a fraction of its cost on this hot path. `text` becomes undefined (and
    // JSON.stringify runs after all) when a key would be enumerated out of insertion order.
    let text: string | undefined = `{"seq":${seq},"timestamp":${timestamp},"event":${quote(event)},"actor":${quote(actor)},"target":${quote(target)},"result":${quote(result)},"version":${version === null ? "null" : quote(version)}`;
    if (!fallback) {
      // for-in over an own-property check allocates no key array (this runs on every emit).
      for (const key in f) {
        if (!Object.hasOwn(f, key)) continue;
        const info = keyInfo(key);
        if (info.kind === KEY_CORE) continue;
        const value = sanitize(readField(f, key), 0, undefined);
        if (value === undefined) continue;
        if (info.kind === KEY_PLAIN) {
          record[key] = value;
          if (text !== undefined) text = `${text},${info.quoted}:${jsonValue(value)}`;
        } else if (info.kind === KEY_RESERVED) {
          conflicts ??= {};
          conflicts[key] = value;
        } else {
          setField(record, key, value);
          text = undefined; // enumerated out of insertion order (or special): let JSON.stringify decide
        }
      }
    } else {
      record.emit_error = f.emit_error;
      text = undefined;
    }
    if (conflicts) {
      record.field_conflicts = conflicts;
      if (text !== undefined) text = `${text},"field_conflicts":${JSON.stringify(conflicts)}`;
    }
    record.origin = this.origin;
    record.prev_hash = this.#lastHash;
    text = text === undefined ? JSON.stringify(record) : `${text},"origin":${this.#quotedOrigin},"prev_hash":"${this.#lastHash}"}`;
    const hash = sha256Hex(text);
    record.hash = hash;
    this.#seq = seq;
    this.#lastHash = hash;
    // Sinks that write lines reuse this text instead of serialising the record again. Before
    // freezing: on a still-extensible record the line rides along for free (no GC ephemeron).
    rememberAuditLine(record as AuditRecord, `${text.slice(0, -1)},"hash":"${hash}"}`);
    Object.freeze(record);
    return record as AuditRecord;
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

  #dispatch(record: AuditRecord): void {
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
      if (this.#closed || s.queue.size >= this.#maxQueue) {
        s.dropped++;
        s.unreportedDrops++;
        drops = true;
      } else {
        s.queue.push(record);
      }
    }
    if (this.#sinks.length > 0 || drops) this.#schedule();
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

  #startWrite(s: SinkState): void {
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

  #written(s: SinkState, attempt: number, n: number): void {
    if (attempt !== s.attempt || s.inFlight === 0) return;
    clearTimeout(s.writeTimer);
    s.writeTimer = undefined;
    s.inFlight = 0;
    s.failures = 0;
    s.queue.drop(n);
    s.delivered += n;
    this.#checkWaiters();
    this.#startWrite(s);
  }

  #failed(s: SinkState, attempt: number, error: unknown): void {
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

  /** True when no record with seq ≤ target is still waiting in this sink. */
  #caughtUp(s: SinkState, target: number): boolean {
    const first = s.queue.at(0);
    return first === undefined || first.seq > target || s.closed;
  }

  #waitFor(s: SinkState, target: number, owner: object): Promise<void> {
    if (this.#caughtUp(s, target)) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push({
        owner,
        caughtUp: () => {
          if (!this.#caughtUp(s, target)) return false;
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

  async #callSink(s: SinkState, method: "flush" | "close"): Promise<void> {
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
      let pending = 0;
      while (pending < s.queue.size && (s.queue.at(pending) as AuditRecord).seq <= target) pending++;
      if (pending > 0 || s.dropped > 0) {
        undelivered.push({ sink: s.sink.name, pending, dropped: s.dropped, lastError: s.lastError });
      }
    }
    return { ok: undelivered.length === 0, undelivered };
  }
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

/** Resolves true if `work` settles before the deadline, false otherwise. */
async function withDeadline(work: Promise<unknown>, deadline: number | undefined): Promise<boolean> {
  if (deadline === undefined) {
    await work;
    return true;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function describeError(error: unknown): string {
  try {
    if (error instanceof Error) return `${error.name}: ${error.message}`;
    return String(error);
  } catch {
    return "unprintable error";
  }
}

function toText(value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value === "string") return value;
  try {
    return typeof value === "object" && value !== null ? JSON.stringify(sanitize(value, 0, undefined)) : String(value);
  } catch (error) {
    return `[unserializable: ${describeError(error)}]`;
  }
}

function readField(obj: Record<string, unknown>, key: string): unknown {
  try {
    return obj[key];
  } catch (error) {
    return `[unserializable: ${describeError(error)}]`;
  }
}

/** `__proto__` must become an own data property (as JSON.parse makes it), not a prototype. */
function setField(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/**
 * Turns any value into what JSON round-trips exactly (and freezes it), never throwing.
 * `undefined` means "omit the field", as JSON.stringify would.
 */
function sanitize(value: unknown, depth: number, seen: Set<object> | undefined): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return value.toString();
    case "undefined":
      return undefined;
    case "function":
    case "symbol":
      return `[unserializable ${typeof value}]`;
    default:
      break;
  }
  if (value === null) return null;
  if (seen === undefined) {
    // Fast path: plain data round-trips through JSON; anything odd falls to the careful walk.
    try {
      const text = JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
      if (text !== undefined) return deepFreeze(JSON.parse(text));
    } catch {
      // circular, throwing getter/toJSON: walk it
    }
    return deepFreeze(walk(value as object, depth, new Set()));
  }
  return walk(value as object, depth, seen);
}

function walk(obj: object, depth: number, seen: Set<object>): unknown {
  if (seen.has(obj)) return "[Circular]";
  if (depth >= MAX_DEPTH) return "[too deep]";
  try {
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") {
      const replaced: unknown = toJSON.call(obj);
      if (replaced !== obj) {
        return replaced !== null && typeof replaced === "object"
          ? walk(replaced, depth + 1, seen)
          : sanitizeLeaf(replaced);
      }
    }
    seen.add(obj);
    if (Array.isArray(obj)) {
      const out: unknown[] = [];
      for (let i = 0; i < obj.length; i++) {
        const v = sanitizeChild(readField(obj as unknown as Record<string, unknown>, String(i)), depth, seen);
        out.push(v === undefined ? null : v);
      }
      seen.delete(obj);
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(obj)) {
      const v = sanitizeChild(readField(obj as Record<string, unknown>, key), depth, seen);
      if (v !== undefined) setField(out, key, v);
    }
    seen.delete(obj);
    return out;
  } catch (error) {
    seen.delete(obj);
    return `[unserializable: ${describeError(error)}]`;
  }
}

function sanitizeChild(value: unknown, depth: number, seen: Set<object>): unknown {
  if (value !== null && typeof value === "object") return walk(value, depth + 1, seen);
  if (typeof value === "function" || typeof value === "symbol") return undefined; // as JSON does
  return sanitizeLeaf(value);
}

function sanitizeLeaf(value: unknown): unknown {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "function" || typeof value === "symbol") return undefined;
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
