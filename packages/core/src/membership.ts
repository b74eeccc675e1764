import { createHmac, createSecretKey } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { systemClock } from "./clock.ts";
import type { Clock } from "./clock.ts";

/**
 * Signed membership, byte-compatible with openrtc-python's `sign_membership`.
 *
 * The token is hex HMAC-SHA256(secret, canonical) where canonical is what Python produces with
 * `json.dumps([version, worker_id, repr(timestamp)], separators=(",", ":"))`: compact
 * separators, `ensure_ascii` escaping, and the timestamp as Python's float repr *inside a JSON
 * string*. Both sides must agree on every byte, so the two Python behaviours JS lacks
 * (`repr(float)` and `ensure_ascii`) are re-implemented here and checked against Python itself in
 * the tests.
 */

export type MembershipErrorCode = "bad_signature" | "stale" | "future" | "version_mismatch" | "malformed";

/** A token failed verification. `code` says why; the message never contains a secret. */
export class MembershipError extends Error {
  override readonly name = "MembershipError";
  readonly code: MembershipErrorCode;

  constructor(code: MembershipErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export interface MembershipClaim {
  /** Hex HMAC-SHA256 produced by `signMembership` (or openrtc-python's `sign_membership`). */
  token: string;
  version: string;
  workerId: string;
  /** Unix seconds the token was issued at (a float, like Python's `time.time()`). */
  timestamp: number;
}

export interface SignMembershipOptions {
  version: string;
  workerId: string;
  timestamp: number;
  secret: string;
}

export interface MembershipVerifierOptions {
  /** Accepted secrets; any one matching is enough, so old and new overlap during a rotation. */
  secrets: readonly string[];
  /** When set, a token for any other version fails with `version_mismatch`. */
  expectedVersion?: string;
  /** How far the token's timestamp may lie from `clock()`, in either direction. Default 300. */
  maxAgeSeconds?: number;
  clock?: Clock;
}

// Python's json `ensure_ascii` leaves exactly the printable ASCII range alone except `"` and `\`.
const JSON_SAFE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const SHORT_ESCAPES: Readonly<Record<number, string>> = {
  0x08: "\\b",
  0x09: "\\t",
  0x0a: "\\n",
  0x0c: "\\f",
  0x0d: "\\r",
  0x22: '\\"',
  0x5c: "\\\\",
};
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * A string as Python's `json.dumps(s)` (default `ensure_ascii=True`) writes it, quotes included:
 * everything outside printable ASCII becomes `\uXXXX` (lowercase hex, UTF-16 code units, so
 * astral characters become surrogate pairs exactly as Python writes them).
 */
export function pythonJsonString(value: string): string {
  if (JSON_SAFE.test(value)) return `"${value}"`;
  let out = '"';
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    const short = SHORT_ESCAPES[code];
    if (short !== undefined) out += short;
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += value[i];
  }
  return `${out}"`;
}

/**
 * Python's `repr(float)`: the shortest digits that round-trip (the same digits JS picks), but
 * always with a `.0` on whole numbers, and in exponent form when the decimal exponent is below -4
 * or above 15 (JS switches at 1e-7 and 1e21), with a signed exponent of at least two digits
 * (`1e-05`, `1e+16`). NaN and infinities are rejected: they have no JSON form and no meaning as a
 * timestamp.
 */
export function pythonFloatRepr(value: number): string {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new RangeError(`expected a finite number, got ${String(value)}`);
  }
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const abs = value < 0 ? -value : value;
  if (abs >= 1e-4 && abs < 1e16) {
    // JS writes fixed notation across this whole range with the same shortest digits.
    const fixed = String(value);
    return fixed.includes(".") ? fixed : `${fixed}.0`;
  }
  const exponential = value.toExponential();
  const at = exponential.indexOf("e");
  const mantissa = exponential.slice(0, at);
  const exponent = Number(exponential.slice(at + 1));
  const magnitude = Math.abs(exponent);
  return `${mantissa}e${exponent < 0 ? "-" : "+"}${magnitude < 10 ? "0" : ""}${magnitude}`;
}

/** The exact bytes signed: `json.dumps([version, worker_id, repr(timestamp)], separators=(",", ":"))`. */
export function membershipCanonical(version: string, workerId: string, timestamp: number): string {
  // repr output is digits, '.', 'e', '+', '-' only: nothing to escape.
  return `${canonicalPrefix(version, workerId)}${pythonFloatRepr(timestamp)}"]`;
}

/** Everything of the canonical message before the timestamp: `["<version>","<workerId>","`. */
function canonicalPrefix(version: string, workerId: string): string {
  return `[${pythonJsonString(version)},${pythonJsonString(workerId)},"`;
}

// Enough for every (version, worker) pair of a large fleet; past it the cache starts over, so
// tokens naming random workers cost speed, never memory.
const MAX_CACHED_PREFIXES = 4096;

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "number" ? String(value) : `a ${typeof value}`;
}

function checkSecret(secret: unknown, where: string): asserts secret is string {
  if (typeof secret !== "string") {
    throw new TypeError(`${where} must be a string (got ${secret === null ? "null" : typeof secret})`);
  }
  if (secret.length === 0) {
    throw new TypeError(`${where} is an empty string; an empty HMAC key authenticates nothing`);
  }
}

/** Hex HMAC-SHA256 of the canonical message; equal to openrtc-python's `sign_membership`. */
export function signMembership({ version, workerId, timestamp, secret }: SignMembershipOptions): string {
  if (typeof version !== "string") throw new TypeError(`signMembership: version must be a string (got ${describeType(version)})`);
  if (typeof workerId !== "string") throw new TypeError(`signMembership: workerId must be a string (got ${describeType(workerId)})`);
  if (typeof timestamp !== "number" || !Number.isFinite(timestamp)) {
    throw new RangeError(`signMembership: timestamp must be a finite number of Unix seconds (got ${describeType(timestamp)})`);
  }
  checkSecret(secret, "signMembership: secret");
  return createHmac("sha256", secret).update(membershipCanonical(version, workerId, timestamp)).digest("hex");
}

/**
 * Imports secrets as HMAC key objects once, so the hot path skips key handling. Shared with the
 * manifest gate. Throws (without echoing any secret) on an empty list or an empty/non-string entry.
 */
export function importSecrets(secrets: unknown, owner: string): KeyObject[] {
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw new TypeError(
      `${owner}: secrets must be a non-empty array of strings; pass the current secret, plus the previous one while rotating`,
    );
  }
  return secrets.map((secret: unknown, index) => {
    checkSecret(secret, `${owner}: secrets[${index}]`);
    return createSecretKey(Buffer.from(secret, "utf8"));
  });
}

/**
 * Equality of two 64-character strings in time independent of where they differ: every code unit
 * is compared and the differences OR-ed together, with no data-dependent branch. This is what
 * `crypto.timingSafeEqual` does natively, but that needs Buffers, and on Node 20 producing the
 * digest as a Buffer (`digest()`) instead of a string (`digest("hex")`) costs more than the whole
 * rest of a verification. Comparing full UTF-16 code units also means no non-ASCII character can
 * alias a hex digit (as it would through a latin1 or hex Buffer conversion).
 */
function constantTimeEqual64(a: string, b: string): boolean {
  let diff = a.length ^ 64;
  for (let i = 0; i < 64; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * Whether `token` is the lowercase hex HMAC-SHA256 of `message` under any of `keys`, compared in
 * constant time. Any string is safe to pass: a non-hex one simply matches nothing.
 */
export function hmacMatchesAny(keys: readonly KeyObject[], message: string, token: string): boolean {
  for (const key of keys) {
    if (constantTimeEqual64(token, createHmac("sha256", key).update(message).digest("hex"))) return true;
  }
  return false;
}

/** True for a string of exactly 64 lowercase hex digits, the only shape a token can have. */
export function isHexDigest(token: unknown): token is string {
  return typeof token === "string" && token.length === 64 && HEX64.test(token);
}

/**
 * Says how far in the future a token is dated, and names the usual mistake: a timestamp in
 * milliseconds (`Date.now()`) or microseconds where Unix seconds (`Date.now() / 1000`, Python's
 * `time.time()`) belong. Any real clock's seconds are below 1e11 until the year 5138.
 */
function futureMessage(timestamp: number, ahead: number, maxAgeSeconds: number): string {
  const base = `membership token is dated ${ahead.toFixed(3)} s in the future, more than maxAgeSeconds=${maxAgeSeconds}`;
  if (timestamp >= 1e14) return `${base}; its timestamp ${timestamp} looks like microseconds: pass Unix seconds (e.g. time.time() in Python)`;
  if (timestamp >= 1e11) return `${base}; its timestamp ${timestamp} looks like milliseconds (Date.now()): pass Unix seconds, Date.now() / 1000`;
  return `${base}; check clock skew`;
}

const MALFORMED_TOKEN = "membership token must be 64 lowercase hex characters (an HMAC-SHA256 digest)";

/** Checks membership tokens. Construct once and reuse: secrets are imported at construction. */
export class MembershipVerifier {
  readonly expectedVersion: string | undefined;
  readonly maxAgeSeconds: number;
  readonly #keys: KeyObject[];
  readonly #clock: Clock;
  // The same workers present tokens again and again with only the timestamp changed; reusing
  // their escaped prefix saves the escaping and most of the string building, which on this hot
  // path cost more in allocation and GC than they look (see bench/membership.ts).
  readonly #prefixes = new Map<string, Map<string, string>>();
  #cachedPrefixes = 0;

  constructor(options: MembershipVerifierOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("MembershipVerifier: options must be an object with at least { secrets }");
    }
    const { secrets, expectedVersion, maxAgeSeconds = 300, clock = systemClock } = options;
    this.#keys = importSecrets(secrets, "MembershipVerifier");
    if (expectedVersion !== undefined && (typeof expectedVersion !== "string" || expectedVersion.length === 0)) {
      throw new TypeError("MembershipVerifier: expectedVersion must be a non-empty string when given");
    }
    if (typeof maxAgeSeconds !== "number" || !Number.isFinite(maxAgeSeconds) || maxAgeSeconds <= 0) {
      throw new RangeError(
        `MembershipVerifier: maxAgeSeconds must be a positive finite number of seconds (got ${describeType(maxAgeSeconds)})`,
      );
    }
    if (typeof clock !== "function") throw new TypeError("MembershipVerifier: clock must be a function returning Unix seconds");
    this.expectedVersion = expectedVersion;
    this.maxAgeSeconds = maxAgeSeconds;
    this.#clock = clock;
  }

  /** Throws `MembershipError` unless the token is authentic, for the expected version, and fresh. */
  verify(claim: MembershipClaim): void {
    const failure = this.#check(claim);
    if (failure !== undefined) throw failure();
  }

  /** Like `verify`, but answers with a boolean (and allocates no error on failure). */
  isValid(claim: MembershipClaim): boolean {
    return this.#check(claim) === undefined;
  }

  // Returns a thunk so `isValid` never pays for building an Error and its stack.
  #check(claim: MembershipClaim): (() => MembershipError) | undefined {
    if (claim === null || typeof claim !== "object") {
      return () => new MembershipError("malformed", "membership claim must be an object { token, version, workerId, timestamp }");
    }
    const { token, version, workerId, timestamp } = claim;
    // Only the cheap shape check here; the full hex check runs only when the signature fails,
    // to tell a malformed token from a wrong one without taxing every valid verification.
    if (typeof token !== "string" || token.length !== 64) {
      return () => new MembershipError("malformed", MALFORMED_TOKEN);
    }
    if (typeof version !== "string") {
      return () => new MembershipError("malformed", `membership version must be a string (got ${describeType(version)})`);
    }
    if (typeof workerId !== "string") {
      return () => new MembershipError("malformed", `membership workerId must be a string (got ${describeType(workerId)})`);
    }
    if (typeof timestamp !== "number" || !Number.isFinite(timestamp)) {
      return () =>
        new MembershipError("malformed", `membership timestamp must be a finite number of Unix seconds (got ${describeType(timestamp)})`);
    }
    const expected = this.expectedVersion;
    if (expected !== undefined && version !== expected) {
      return () =>
        new MembershipError("version_mismatch", `membership is for version ${JSON.stringify(version)}, expected ${JSON.stringify(expected)}`);
    }
    const age = this.#clock() - timestamp;
    if (age > this.maxAgeSeconds) {
      return () =>
        new MembershipError("stale", `membership token is ${age.toFixed(3)} s old, more than maxAgeSeconds=${this.maxAgeSeconds}; re-sign it`);
    }
    if (-age > this.maxAgeSeconds) {
      return () => new MembershipError("future", futureMessage(timestamp, -age, this.maxAgeSeconds));
    }
    const message = `${this.#prefix(version, workerId)}${pythonFloatRepr(timestamp)}"]`;
    if (!hmacMatchesAny(this.#keys, message, token)) {
      if (!HEX64.test(token)) return () => new MembershipError("malformed", MALFORMED_TOKEN);
      return () => new MembershipError("bad_signature", "membership token signature does not match any configured secret");
    }
    return undefined;
  }

  #prefix(version: string, workerId: string): string {
    let byWorker = this.#prefixes.get(version);
    let prefix = byWorker?.get(workerId);
    if (prefix !== undefined) return prefix;
    if (this.#cachedPrefixes >= MAX_CACHED_PREFIXES) {
      this.#prefixes.clear();
      this.#cachedPrefixes = 0;
      byWorker = undefined;
    }
    if (byWorker === undefined) {
      byWorker = new Map();
      this.#prefixes.set(version, byWorker);
    }
    prefix = canonicalPrefix(version, workerId);
    byWorker.set(workerId, prefix);
    this.#cachedPrefixes++;
    return prefix;
  }
}
