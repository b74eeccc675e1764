import { isUtf8 } from "node:buffer";
import type { KeyObject } from "node:crypto";
import { GENESIS_HASH, HASH_PATTERN, sha256Hex } from "./hash.ts";
import { CHECKPOINT_EVENT, CHECKPOINT_SIGNATURE_EVENT, CheckpointKeys, normalizeExpectedCheckpoint } from "./checkpoint.ts";
import type { ExpectedCheckpoint } from "./checkpoint.ts";

/**
 * What is wrong with the first bad line:
 * - `malformed`: not a JSON object with the record fields of the right types, a blank line
 *   that is not at the end, a line longer than `maxLineBytes`, or nested too deep to check;
 * - `edited`: the record's `hash` does not match its content, or the line is not byte for byte
 *   the canonical serialization of its record (duplicate keys, re-spelled escapes or numbers,
 *   whitespace, invalid UTF-8: two lines that parse alike must not both pass);
 * - `overflow`: records are missing, and the `audit.records_dropped` record right after the hole
 *   says a sink's queue overflowed there (range in `lost`); reported only when nothing worse was
 *   found, since the rest of the chain is checked across the hole;
 * - `gap`: a `seq` is missing in an origin (a record was deleted, or the log starts after 1);
 * - `reorder`: a missing `seq` turns up later (records were moved);
 * - `inserted`: a record whose `seq` duplicates another one of its origin (whether or not its
 *   hash was recomputed), or which takes the next `seq` without linking to its predecessor
 *   while the original of that `seq` follows;
 * - `broken_chain`: `prev_hash` is not the hash of the previous record of the origin (a record
 *   was rewritten and re-hashed, or replaced).
 * Checkpoints (see `audit-checkpoint.ts`):
 * - `bad_signature`: a checkpoint's signature does not verify with the keys given (or it has
 *   none they can check);
 * - `checkpoint_mismatch`: a checkpoint's size/head do not match the chain before it, or the
 *   record at an expected checkpoint's size has another hash (history was rewritten);
 * - `truncated`: the log ends before an expected checkpoint's size (its tail was cut);
 * - `unsigned`: with `requireSigned`, an origin has no verified checkpoint, or the log has no
 *   record at all.
 */
export type AuditFault =
  | "gap"
  | "reorder"
  | "edited"
  | "inserted"
  | "broken_chain"
  | "malformed"
  | "bad_signature"
  | "checkpoint_mismatch"
  | "truncated"
  | "unsigned"
  | "overflow";

export interface AuditVerifyOptions {
  /**
   * The lines are a contiguous slice of a longer log (e.g. one rotated file): an origin's first
   * record may have any `seq` and its `prev_hash` is taken on trust. Default false: every origin
   * must start at `seq` 1 from the genesis hash.
   */
  partial?: boolean;
  /** HMAC secrets checkpoints may be signed with (several while rotating). */
  hmacSecrets?: readonly string[];
  /** Ed25519 public keys (KeyObject or PEM) checkpoints may be signed with. */
  ed25519PublicKeys?: readonly (KeyObject | string)[];
  /**
   * Checkpoints kept apart from the log (e.g. from `hooks.onCheckpoint`): `{ origin, size, head }`
   * or the checkpoint record itself. The log must still hold that origin's records up to `size`,
   * and the one at `size` must have hash `head`.
   */
  expectCheckpoint?: ExpectedCheckpoint | Readonly<Record<string, unknown>> | readonly (ExpectedCheckpoint | Readonly<Record<string, unknown>>)[];
  /** Every origin must have at least one checkpoint verified with the keys given (and there must be records). */
  requireSigned?: boolean;
  /**
   * Key id → the origins that key may sign (exact names, or a prefix ending in `*`). When given,
   * a checkpoint signed by a key for an origin not listed for it is `bad_signature`.
   */
  keyOrigins?: Readonly<Record<string, readonly string[]>>;
  /** Longest line accepted, in UTF-8 bytes (default 1 MiB); a longer one is `malformed`. */
  maxLineBytes?: number;
}

/** Records a sink lost to its queue overflowing, as the `audit.records_dropped` record says. */
export interface AuditLostRange {
  origin: string;
  sink: string;
  firstSeq: number;
  lastSeq: number;
  /** Where the `audit.records_dropped` record is. */
  line: number;
  file?: string;
}

/** Where a line came from: 1-based line number, and the file when a reader spans several. */
export interface AuditLinePosition {
  line: number;
  file?: string;
}

export interface AuditChainSummary {
  origin: string;
  records: number;
  firstSeq: number;
  lastSeq: number;
  /** `hash` of the origin's last record. */
  headHash: string;
  /** Checkpoint records seen. */
  checkpoints: number;
  /** Highest `checkpoint_size` whose signature verified with the keys given (0: none). */
  signedSize: number;
  /** Signature kinds that verified the last checkpoint ("hmac", "ed25519"); empty without keys. */
  lastCheckpointVerifiedBy: string[];
  /** The newest checkpoint whose signature verified: its own seq and its time (null: none). */
  signedCheckpoint: { seq: number; size: number; time: number } | null;
  /** `checkpoint_head` of `signedCheckpoint` (the hash of record `size`). */
  signedCheckpointHead?: string;
  /** Holes the log itself explains as a sink's overflow. */
  lost: AuditLostRange[];
}

export interface AuditVerifyOk {
  ok: true;
  /** Records checked, all origins together. */
  records: number;
  /** Number of distinct origins (chains). */
  origins: number;
  chains: AuditChainSummary[];
}

export interface AuditVerifyFailure {
  ok: false;
  /** 1-based line number of the first bad line (within `file` when given). */
  line: number;
  file?: string;
  /** `seq` of the bad line's record, or null when it has none (malformed). */
  seq: number | null;
  origin?: string;
  fault: AuditFault;
  message: string;
  /** With `overflow`: every hole explained by an `audit.records_dropped` record. */
  lost?: AuditLostRange[];
  /** With `overflow`: what was checked, as on success. */
  chains?: AuditChainSummary[];
}

export type AuditVerifyResult = AuditVerifyOk | AuditVerifyFailure;

interface Parsed {
  record: Record<string, unknown>;
  seq: number;
  origin: string;
  prevHash: string;
  hash: string;
  pos: AuditLinePosition;
}

interface Chain {
  origin: string;
  records: number;
  firstSeq: number;
  last: Parsed;
  checkpoints: number;
  signedSize: number;
  lastVerifiedBy: string[];
  signedCheckpoint: { seq: number; size: number; time: number } | null;
  signedHead?: string;
  /** Recent checkpoint claims by seq, for signatures that arrive later (external signer). */
  claims: Map<number, { size: number; head: string; time: number; record: Record<string, unknown> }>;
  lost: AuditLostRange[];
}

const MAX_CLAIMS = 64;
const DEFAULT_MAX_LINE_BYTES = 1 << 20;
/** `,"hash":"<64 hex>"}`: the writer puts `hash` last, so the hashed text is the line without it. */
const HASH_SUFFIX_LENGTH = 75;

/**
 * An anomaly whose kind depends on what follows (one record of lookahead in its origin, or the
 * end): a jump in `seq` is a `gap` unless the missing record turns up (`reorder`); a record
 * that does not link is `broken_chain` unless the original of its `seq` follows (`inserted`).
 */
type Pending =
  | { kind: "gap"; at: Parsed; from: number; to: number }
  | { kind: "link"; at: Parsed; parent: Parsed | undefined /* undefined: genesis */ }
  | { kind: "dup"; at: Parsed; first: Parsed }
  | { kind: "edited"; at: Parsed; parentHash: string; notCanonical: boolean };

/**
 * Streaming checker of an audit log: feed lines in order with `push`, then call `finish`.
 * Several origins may be interleaved. Stops at the first fault (later pushes are ignored), and
 * reports the earliest bad line. Memory is one record per origin.
 */
export class AuditVerifier {
  readonly #options: AuditVerifyOptions;
  readonly #keys: CheckpointKeys;
  readonly #expected = new Map<string, ExpectedCheckpoint>();
  readonly #chains = new Map<string, Chain>();
  #records = 0;
  #lineNo = 0;
  #blank: AuditLinePosition | undefined;
  #pending: Pending | undefined;
  #failure: AuditVerifyFailure | undefined;
  #finished: AuditVerifyResult | undefined;

  /** Throws a TypeError (naming the option) for unusable keys or expected checkpoints. */
  readonly #maxLineBytes: number;

  constructor(options: AuditVerifyOptions = {}) {
    this.#options = options;
    this.#keys = new CheckpointKeys(options.hmacSecrets, options.ed25519PublicKeys, options.keyOrigins);
    const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    if (!Number.isSafeInteger(max) || max < 1) throw new TypeError(`verifyAuditLog: maxLineBytes must be a positive integer, got ${String(max)}`);
    this.#maxLineBytes = max;
    const expected = options.expectCheckpoint;
    for (const e of expected === undefined ? [] : Array.isArray(expected) ? expected : [expected]) {
      const cp = normalizeExpectedCheckpoint(e);
      const known = this.#expected.get(cp.origin);
      if (!known || known.size < cp.size) this.#expected.set(cp.origin, cp);
    }
    if (options.requireSigned && !this.#keys.any) {
      throw new TypeError("verifyAuditLog: requireSigned needs hmacSecrets or ed25519PublicKeys to check signatures with");
    }
  }

  /** The first fault found so far, if any. */
  get failure(): AuditVerifyFailure | undefined {
    return this.#failure;
  }

  /**
   * Checks one line (without its newline): its bytes (best: invalid UTF-8 is caught) or its
   * text. `position` defaults to a running 1-based counter. Returns false once a fault is known
   * (the caller may stop reading).
   */
  push(input: string | Uint8Array, position?: AuditLinePosition): boolean {
    if (this.#failure || this.#finished) return false;
    this.#lineNo++;
    const pos = position ?? { line: this.#lineNo };
    let line: string;
    if (input instanceof Uint8Array) {
      if (input.byteLength > this.#maxLineBytes) {
        this.#fail(pos, null, "malformed", `${where(pos)} is ${input.byteLength} bytes, over the ${this.#maxLineBytes}-byte line limit`);
        return false;
      }
      if (!isUtf8(input)) {
        this.#fail(pos, null, "edited", `${where(pos)} is not valid UTF-8: the written line was altered`);
        return false;
      }
      line = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString("utf8");
    } else if (typeof input === "string") {
      line = input;
      if (line.length > this.#maxLineBytes / 3 && Buffer.byteLength(line, "utf8") > this.#maxLineBytes) {
        this.#fail(pos, null, "malformed", `${where(pos)} is over the ${this.#maxLineBytes}-byte line limit`);
        return false;
      }
    } else {
      this.#fail(pos, null, "malformed", `${where(pos)} is not text`);
      return false;
    }
    if (line.trim() === "") {
      this.#blank ??= pos;
      return true;
    }
    if (this.#blank) {
      this.#fail(this.#blank, null, "malformed", `${where(this.#blank)} is blank but more records follow it`);
      return false;
    }
    const parsed = this.#parse(line, pos);
    if (parsed) this.#link(parsed);
    return this.#failure === undefined;
  }

  finish(): AuditVerifyResult {
    if (this.#finished) return this.#finished;
    if (!this.#failure && this.#pending) this.#settlePending();
    if (!this.#failure) this.#finalChecks();
    if (this.#failure) {
      this.#finished = this.#failure;
      return this.#failure;
    }
    const chains = [...this.#chains.values()].map((c) => ({
      origin: c.origin,
      records: c.records,
      firstSeq: c.firstSeq,
      lastSeq: c.last.seq,
      headHash: c.last.hash,
      checkpoints: c.checkpoints,
      signedSize: c.signedSize,
      lastCheckpointVerifiedBy: c.lastVerifiedBy,
      signedCheckpoint: c.signedCheckpoint,
      ...(c.signedHead === undefined ? {} : { signedCheckpointHead: c.signedHead }),
      lost: c.lost,
    }));
    const lost = chains.flatMap((c) => c.lost);
    if (lost.length > 0) {
      // The chain is intact across the holes, but records are missing: not "OK", and not deletion.
      const first = lost[0] as AuditLostRange;
      const ranges = lost.map((l) => `${l.origin} seq ${l.firstSeq}..${l.lastSeq} (sink ${l.sink})`).join(", ");
      this.#finished = {
        ok: false,
        line: first.line,
        ...(first.file === undefined ? {} : { file: first.file }),
        seq: first.lastSeq + 1,
        origin: first.origin,
        fault: "overflow",
        message: `records were lost to a sink's queue overflow, as the log records (audit.records_dropped): ${ranges}; everything else verified`,
        lost,
        chains,
      };
      return this.#finished;
    }
    this.#finished = { ok: true, records: this.#records, origins: chains.length, chains };
    return this.#finished;
  }

  #parse(line: string, pos: AuditLinePosition): Parsed | undefined {
    let value: unknown;
    let canonical: string | undefined;
    try {
      value = JSON.parse(line);
      // Recursion inside JSON.stringify is the only deep walk; a line nested past the stack
      // throws RangeError here and is reported, never a crash.
      canonical = value !== null && typeof value === "object" && !Array.isArray(value) ? JSON.stringify(value) : undefined;
    } catch (error) {
      const why = error instanceof RangeError ? "is nested too deep to check" : `is not JSON (${(error as Error).message})`;
      this.#fail(pos, null, "malformed", `${where(pos)} ${why}`);
      return undefined;
    }
    if (canonical === undefined) {
      this.#fail(pos, null, "malformed", `${where(pos)} is not a JSON object`);
      return undefined;
    }
    const record = value as Record<string, unknown>;
    const { seq, origin, prev_hash: prevHash, hash } = record;
    const seqOk = typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 1;
    const bad =
      !seqOk ? "`seq` (a positive integer)"
      : typeof origin !== "string" || origin === "" ? "`origin` (a non-empty string)"
      : typeof prevHash !== "string" || !HASH_PATTERN.test(prevHash) ? "`prev_hash` (64 lowercase hex)"
      : typeof hash !== "string" || !HASH_PATTERN.test(hash) ? "`hash` (64 lowercase hex)"
      : undefined;
    if (bad !== undefined) {
      this.#fail(pos, seqOk ? (seq as number) : null, "malformed", `${where(pos)} lacks a valid ${bad}`);
      return undefined;
    }
    const parsed: Parsed = {
      record,
      seq: seq as number,
      origin: origin as string,
      prevHash: prevHash as string,
      hash: hash as string,
      pos,
    };
    // Bytes, not parsed values, are what the hash vouches for: the line must be exactly the
    // canonical text of its record (hash last), so duplicate keys or re-spelled values fail.
    const suffix = `,"hash":"${parsed.hash}"}`;
    if (canonical !== line || !line.endsWith(suffix) || sha256Hex(`${line.slice(0, -HASH_SUFFIX_LENGTH)}}`) !== parsed.hash) {
      this.#mismatch(parsed, canonical !== line);
      return undefined;
    }
    const field = badField(record);
    if (field !== undefined) {
      this.#fail(pos, parsed.seq, "malformed", `${where(pos)} (seq ${parsed.seq}) lacks a valid ${field}`, parsed.origin);
      return undefined;
    }
    return parsed;
  }

  #link(r: Parsed): void {
    const chain = this.#chains.get(r.origin);
    const pending = this.#pending;
    if (pending && pending.at.origin === r.origin && (chain || pending.kind === "edited")) {
      this.#resolvePending(pending, chain as Chain, r);
      return;
    }
    if (!chain) {
      const created: Chain = { origin: r.origin, records: 0, firstSeq: r.seq, last: r, checkpoints: 0, signedSize: 0, lastVerifiedBy: [], signedCheckpoint: null, claims: new Map(), lost: [] };
      this.#chains.set(r.origin, created);
      this.#accept(created, r);
      if (this.#options.partial || (r.seq === 1 && r.prevHash === GENESIS_HASH)) return;
      if (this.#overflowMarker(created, r, 1, GENESIS_HASH)) return;
      if (r.seq === 1) {
        this.#anomaly({ kind: "link", at: r, parent: undefined });
      } else {
        this.#anomaly({ kind: "gap", at: r, from: 1, to: r.seq - 1 });
      }
      return;
    }
    const last = chain.last;
    if (r.seq === last.seq + 1) {
      this.#accept(chain, r);
      if (r.prevHash !== last.hash) this.#anomaly({ kind: "link", at: r, parent: last });
    } else if (r.seq > last.seq + 1) {
      this.#accept(chain, r);
      if (!this.#overflowMarker(chain, r, last.seq + 1, last.hash)) this.#anomaly({ kind: "gap", at: r, from: last.seq + 1, to: r.seq - 1 });
    } else if (r.seq === last.seq && r.hash !== last.hash && r.prevHash === last.prevHash) {
      this.#anomaly({ kind: "dup", at: r, first: last });
    } else {
      const copy = r.hash === last.hash ? `is a copy of ${where(last.pos)}` : `repeats seq ${r.seq}, already seen before ${where(last.pos)}`;
      this.#fail(r.pos, r.seq, "inserted", `${where(r.pos)} (seq ${r.seq} of ${r.origin}) ${copy}: a record was inserted`, r.origin);
    }
  }

  /**
   * A hole right before `r` is a recorded overflow when `r` is the log's own
   * `audit.records_dropped` record naming exactly that hole and the hash before it. A forged
   * marker must carry a valid hash and be linked to by the next record, so it cannot explain a
   * deletion without rewriting every later record (which signed checkpoints catch).
   */
  #overflowMarker(chain: Chain, r: Parsed, from: number, prevHash: string): boolean {
    const m = r.record;
    if (m.event !== "audit.records_dropped" || m.dropped_first_seq !== from || m.dropped_last_seq !== r.seq - 1 || m.dropped_prev_hash !== prevHash) return false;
    chain.lost.push({
      origin: r.origin,
      sink: typeof m.sink === "string" ? m.sink : "",
      firstSeq: from,
      lastSeq: r.seq - 1,
      line: r.pos.line,
      ...(r.pos.file === undefined ? {} : { file: r.pos.file }),
    });
    return true;
  }

  /**
   * A record whose content does not match its hash: edited, unless its seq is already taken (a
   * forged copy was inserted), or the original of its seq follows it (inserted before it).
   */
  #mismatch(r: Parsed, notCanonical = false): void {
    const chain = this.#chains.get(r.origin);
    if (this.#pending?.at.origin === r.origin) {
      this.#settlePending();
      return;
    }
    if (chain && r.seq <= chain.last.seq) {
      this.#fail(r.pos, r.seq, "inserted", `${where(r.pos)} (seq ${r.seq} of ${r.origin}) repeats a seq already seen and does not match its hash: a forged record was inserted`, r.origin);
    } else if (!chain || r.seq === chain.last.seq + 1) {
      this.#anomaly({ kind: "edited", at: r, parentHash: chain ? chain.last.hash : GENESIS_HASH, notCanonical });
    } else {
      this.#fail(r.pos, r.seq, "edited", editedMessage(r, notCanonical), r.origin);
    }
  }

  #accept(chain: Chain, r: Parsed): void {
    chain.last = r;
    chain.records++;
    this.#records++;
    const expected = this.#expected.get(r.origin);
    if (expected && expected.size === r.seq && expected.head !== r.hash) {
      this.#fail(r.pos, r.seq, "checkpoint_mismatch", `${where(r.pos)} (seq ${r.seq} of ${r.origin}) has not the hash the expected checkpoint holds for it; the history up to it was rewritten`, r.origin);
    }
    if (r.record.event === CHECKPOINT_EVENT) this.#checkCheckpoint(chain, r);
    else if (r.record.event === CHECKPOINT_SIGNATURE_EVENT) this.#checkLateSignature(chain, r);
  }

  #checkCheckpoint(chain: Chain, r: Parsed): void {
    chain.checkpoints++;
    const { checkpoint_size: size, checkpoint_head: head, checkpoint_time: time } = r.record;
    if (size !== r.seq - 1 || head !== r.prevHash || typeof time !== "number" || !Number.isFinite(time)) {
      this.#fail(r.pos, r.seq, "checkpoint_mismatch", `${where(r.pos)} (seq ${r.seq} of ${r.origin}): checkpoint_size/checkpoint_head must name the record just before it (seq ${r.seq - 1}, hash = prev_hash) and checkpoint_time must be a number`, r.origin);
      return;
    }
    chain.claims.set(r.seq, { size, head, time, record: r.record });
    if (chain.claims.size > MAX_CLAIMS) chain.claims.delete(chain.claims.keys().next().value as number);
    // Signed only by an external signer: the signature follows in its own record.
    if (r.record.hmac === undefined && r.record.ed25519_sig === undefined) return;
    this.#checkSignature(chain, r, r.seq, size, head, time, r.record);
  }

  /** An external signer's signature for an earlier checkpoint of the chain. */
  #checkLateSignature(chain: Chain, r: Parsed): void {
    const m = r.record;
    if (m.result !== "ok") return; // the signer failed; the record says why, nothing is vouched for
    const claim = typeof m.checkpoint_seq === "number" ? chain.claims.get(m.checkpoint_seq) : undefined;
    if (claim === undefined || m.checkpoint_size !== claim.size || m.checkpoint_head !== claim.head || m.checkpoint_time !== claim.time) {
      this.#fail(r.pos, r.seq, "checkpoint_mismatch", `${where(r.pos)} (seq ${r.seq} of ${r.origin}): signs checkpoint seq ${String(m.checkpoint_seq)}, which this log does not hold with the same size, head and time`, r.origin);
      return;
    }
    this.#checkSignature(chain, r, m.checkpoint_seq as number, claim.size, claim.head, claim.time, m);
  }

  #checkSignature(chain: Chain, r: Parsed, checkpointSeq: number, size: number, head: string, time: number, signed: Readonly<Record<string, unknown>>): void {
    const check = this.#keys.check(signed, r.origin, size, head, time);
    if (check.problem !== undefined) {
      this.#fail(r.pos, r.seq, "bad_signature", `${where(r.pos)} (checkpoint seq ${checkpointSeq} of ${r.origin}) is not trusted: ${check.problem}`, r.origin);
      return;
    }
    chain.lastVerifiedBy = check.verifiedBy;
    if (check.verifiedBy.length > 0 && size >= chain.signedSize) {
      chain.signedSize = size;
      chain.signedCheckpoint = { seq: checkpointSeq, size, time };
      chain.signedHead = head;
    }
  }

  #finalChecks(): void {
    for (const expected of this.#expected.values()) {
      const chain = this.#chains.get(expected.origin);
      if (!chain || chain.last.seq < expected.size) {
        const have = chain ? `ends at seq ${chain.last.seq}` : "has no record of it";
        const pos = chain ? chain.last.pos : { line: this.#lineNo };
        this.#fail(pos, chain ? chain.last.seq : null, "truncated", `the log ${have} but a checkpoint of ${expected.origin} covers seq 1..${expected.size}: its tail was cut`, expected.origin);
        return;
      }
    }
    if (this.#options.requireSigned) {
      if (this.#chains.size === 0) {
        this.#fail({ line: this.#lineNo }, null, "unsigned", "the log holds no record: nothing is signed (an empty or emptied log proves nothing)");
        return;
      }
      for (const chain of this.#chains.values()) {
        if (chain.signedSize === 0) {
          this.#fail(chain.last.pos, chain.last.seq, "unsigned", `origin ${chain.origin} has no checkpoint verified with the keys given; its records are only hash-chained`, chain.origin);
          return;
        }
      }
    }
  }

  #anomaly(p: Pending): void {
    if (this.#pending) {
      this.#settlePending();
      return;
    }
    this.#pending = p;
  }

  /** The next record of the pending anomaly's origin decides its kind. */
  #resolvePending(p: Pending, chain: Chain, r: Parsed): void {
    const at = p.at;
    switch (p.kind) {
      case "gap":
        if (r.seq >= p.from && r.seq <= p.to) {
          this.#pending = undefined;
          this.#fail(at.pos, at.seq, "reorder", `${where(at.pos)} (seq ${at.seq} of ${at.origin}) comes before seq ${r.seq} at ${where(r.pos)}: records were reordered`, at.origin);
        } else if (r.seq === chain.last.seq + 1 && r.prevHash === chain.last.hash) {
          // The chain goes on normally; the missing records may still turn up later.
          this.#accept(chain, r);
        } else {
          this.#settlePending();
        }
        return;
      case "link":
        this.#pending = undefined;
        if (r.seq === at.seq && r.prevHash === (p.parent?.hash ?? GENESIS_HASH)) {
          this.#fail(at.pos, at.seq, "inserted", `${where(at.pos)} (seq ${at.seq} of ${at.origin}) was inserted: the original seq ${r.seq} follows at ${where(r.pos)}`, at.origin);
        } else {
          this.#settlePending(p);
        }
        return;
      case "edited":
        this.#pending = undefined;
        if (r.seq === at.seq && r.prevHash === p.parentHash) {
          this.#fail(at.pos, at.seq, "inserted", `${where(at.pos)} (seq ${at.seq} of ${at.origin}) does not match its hash and the original seq ${r.seq} follows at ${where(r.pos)}: a forged record was inserted`, at.origin);
        } else {
          this.#settlePending(p);
        }
        return;
      case "dup": {
        this.#pending = undefined;
        // Whichever copy the chain continues from is the original; the other was inserted.
        const inserted = r.prevHash === at.hash ? p.first : at;
        const other = inserted === at ? p.first : at;
        this.#fail(inserted.pos, inserted.seq, "inserted", `${where(inserted.pos)} (seq ${inserted.seq} of ${inserted.origin}) was inserted: ${where(other.pos)} has the same seq`, inserted.origin);
        return;
      }
    }
  }

  /** Reports a pending anomaly with the kind it has when nothing more is known. */
  #settlePending(p: Pending | undefined = this.#pending): void {
    this.#pending = undefined;
    if (!p) return;
    const at = p.at;
    switch (p.kind) {
      case "gap": {
        const missing = p.from === p.to ? `seq ${p.from} is` : `seqs ${p.from}..${p.to} are`;
        this.#fail(at.pos, at.seq, "gap", `${where(at.pos)} (seq ${at.seq} of ${at.origin}): ${missing} missing; records were deleted`, at.origin);
        return;
      }
      case "link": {
        const parent = p.parent ? `the hash of seq ${p.parent.seq} at ${where(p.parent.pos)}` : "the genesis hash (the first record of an origin)";
        this.#fail(at.pos, at.seq, "broken_chain", `${where(at.pos)} (seq ${at.seq} of ${at.origin}): prev_hash is not ${parent}; a record was rewritten or replaced`, at.origin);
        return;
      }
      case "dup":
        this.#fail(at.pos, at.seq, "inserted", `${where(at.pos)} (seq ${at.seq} of ${at.origin}) was inserted: ${where(p.first.pos)} has the same seq`, at.origin);
        return;
      case "edited":
        this.#fail(at.pos, at.seq, "edited", editedMessage(at, p.notCanonical), at.origin);
        return;
    }
  }

  /** Records a fault, unless an earlier pending anomaly must be reported first. */
  #fail(pos: AuditLinePosition, seq: number | null, fault: AuditFault, message: string, origin?: string): void {
    if (this.#failure) return;
    if (this.#pending) {
      this.#settlePending();
      return;
    }
    this.#failure = {
      ok: false,
      line: pos.line,
      ...(pos.file === undefined ? {} : { file: pos.file }),
      seq,
      ...(origin === undefined ? {} : { origin }),
      fault,
      message,
    };
  }
}

/**
 * A line to verify: the bare text, or an entry that says where it came from, as
 * `readAuditFiles` (`file`, `lineNo`) and the S3 reader (`key`, `lineNo`) yield them.
 */
export type AuditLineInput = string | Uint8Array | { line: string | Uint8Array; lineNo?: number; file?: string; key?: string };

/**
 * Checks a whole log. `lines` are the log's lines in order (a string is split on newlines), bare
 * or with their position; an async iterable gives a promise. Pure: reads nothing else. Throws a
 * TypeError only for unusable options (keys, expected checkpoints).
 */
export function verifyAuditLog(lines: string | Iterable<AuditLineInput>, options?: AuditVerifyOptions): AuditVerifyResult;
export function verifyAuditLog(lines: AsyncIterable<AuditLineInput>, options?: AuditVerifyOptions): Promise<AuditVerifyResult>;
export function verifyAuditLog(
  lines: string | Iterable<AuditLineInput> | AsyncIterable<AuditLineInput>,
  options?: AuditVerifyOptions,
): AuditVerifyResult | Promise<AuditVerifyResult> {
  const verifier = new AuditVerifier(options);
  if (typeof lines === "string") lines = lines.split("\n");
  let counter = 0;
  const push = (input: AuditLineInput): boolean => {
    counter++;
    if (typeof input === "string" || input instanceof Uint8Array) return verifier.push(input, { line: counter });
    const file = input?.file ?? input?.key;
    const line = input?.lineNo ?? counter;
    return verifier.push(input?.line, file === undefined ? { line } : { line, file });
  };
  if (Symbol.asyncIterator in lines) {
    return (async () => {
      for await (const input of lines) if (!push(input)) break;
      return verifier.finish();
    })();
  }
  for (const input of lines) if (!push(input)) break;
  return verifier.finish();
}

function editedMessage(r: Parsed, notCanonical: boolean): string {
  return notCanonical
    ? `${where(r.pos)} (seq ${r.seq} of ${r.origin}): the line is not the canonical serialization of its record (duplicate keys, re-spelled values or whitespace); the record was edited`
    : `${where(r.pos)} (seq ${r.seq} of ${r.origin}): content does not match its hash; the record was edited`;
}

function where(pos: AuditLinePosition): string {
  return pos.file === undefined ? `line ${pos.line}` : `${pos.file}:${pos.line}`;
}

function badField(record: Record<string, unknown>): string | undefined {
  if (typeof record.timestamp !== "number" || !Number.isFinite(record.timestamp)) return "`timestamp` (a number)";
  for (const key of ["event", "actor", "target", "result"]) {
    if (typeof record[key] !== "string") return `\`${key}\` (a string)`;
  }
  if (record.version !== null && typeof record.version !== "string") return "`version` (a string or null)";
  return undefined;
}
