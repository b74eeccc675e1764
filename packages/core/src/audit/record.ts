import { sha256Hex } from "./hash.ts";
import { describeError } from "./errors.ts";
import { rememberAuditLine } from "./line.ts";

/**
 * The audit record: its shape, the event names, and how `emit`'s fields become one canonical,
 * hash-chained record. Kept apart from delivery (`delivery.ts`) and the log (`log.ts`) so the
 * exact bytes a record hashes to are defined in one place.
 */
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
  /** The signature of a checkpoint signed by an external signer (KMS, signer process), written once it arrives. */
  CheckpointSignature: "audit.checkpoint_signature",
  /** Written by the log when a sink's queue overflowed: which records that sink lost. */
  RecordsDropped: "audit.records_dropped",
  /** What a caller's `emit` of a reserved `audit.*` name becomes (the name is in `field_conflicts.event`). */
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
/** Events only the log itself writes. */
const RESERVED_EVENTS: ReadonlySet<string> = new Set(["audit.checkpoint", "audit.checkpoint_signature", "audit.records_dropped"]);

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

/** Where the next record goes in its chain: everything `buildRecord` needs besides the fields. */
export interface ChainPosition {
  origin: string;
  /** `JSON.stringify(origin)`, computed once per log. */
  quotedOrigin: string;
  /** The new record's seq. */
  seq: number;
  prevHash: string;
  timestamp: number;
  /** `version` of a record whose fields do not name one. */
  defaultVersion: string | null;
}

/**
 * Builds, hashes and freezes one record. Never throws for odd field values (see `AuditLog`);
 * `fallback` writes only `emit_error` (used when reading the fields threw), `internal` lets the
 * log itself write reserved events (checkpoints).
 */
export function buildRecord(at: ChainPosition, type: unknown, fields: unknown, fallback: boolean, internal: boolean): AuditRecord {
  const seq = at.seq;
  const f = (fields !== null && typeof fields === "object" ? fields : {}) as Record<string, unknown>;
  const timestamp = at.timestamp;
  let event = toText(type, "");
  let conflicts: Record<string, unknown> | undefined;
  if (!internal && RESERVED_EVENTS.has(event)) {
    // Only the log writes these: a caller's checkpoint would look unverifiable, and a caller's
    // drop marker could try to explain away a deleted record.
    conflicts = { event };
    event = AuditEventType.ReservedEvent;
  }
  const actor = toText(f.actor, "system");
  const target = toText(f.target, "");
  const result = toText(f.result, "ok");
  const version = f.version === undefined ? at.defaultVersion : f.version === null ? null : toText(f.version, "");
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
  record.origin = at.origin;
  record.prev_hash = at.prevHash;
  text = text === undefined ? JSON.stringify(record) : `${text},"origin":${at.quotedOrigin},"prev_hash":"${at.prevHash}"}`;
  const hash = sha256Hex(text);
  record.hash = hash;
  // Sinks that write lines reuse this text instead of serialising the record again. Before
  // freezing: on a still-extensible record the line rides along for free (no GC ephemeron).
  rememberAuditLine(record as AuditRecord, `${text.slice(0, -1)},"hash":"${hash}"}`);
  Object.freeze(record);
  return record as AuditRecord;
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

