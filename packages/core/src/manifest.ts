import { createHash, createHmac } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, watch, writeSync } from "node:fs";
import type { FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { systemClock } from "./clock.ts";
import type { Clock } from "./clock.ts";
import { describeError } from "./isolation.ts";
import { stderrLogger } from "./logger.ts";
import type { Logger } from "./logger.ts";
import { hmacMatchesAny, importSecrets, isHexDigest, pythonFloatRepr, pythonJsonString } from "./membership.ts";

/**
 * The active-version manifest: which deployment versions may take new jobs.
 *
 * Wire format (JSON, e.g. a file mounted from a ConfigMap):
 *
 *     { "seq": 7, "active_versions": ["v2.0.0"], "issued_at": 1763800000.5, "expires_at": 1764404800.5, "signature": "<hex>" }
 *
 * `signature` is hex HMAC-SHA256, under one of the membership secrets, of
 *
 *     json.dumps(["openrtc.manifest.v2", seq, sorted(active_versions), repr(float(issued_at)), repr(float(expires_at))], separators=(",", ":"))
 *
 * Python spelling on purpose, so openrtc-python or a shell script with python3 can sign one. The
 * versions are sorted by code point (Python's `sorted`), so their order in the file does not
 * matter. `float()` matters: JSON writers print a whole `issued_at` without a fraction, which
 * Python would read back as an int whose repr lacks the `.0`. The domain tag keeps a manifest
 * signature from ever being replayed as a membership token.
 *
 * Replacement rules, enforced by `ManifestGate`:
 * - only an authentic manifest (signature matches a configured secret) is ever accepted;
 * - `seq` only moves forward: an older seq is rejected, and an equal seq is accepted only as a
 *   no-op when its content is identical (a replay with different content is rejected);
 * - anything unreadable, torn, malformed or unsigned is rejected and the current manifest kept;
 * - with a state file, the highest accepted `seq` survives a restart (a restarted worker never
 *   takes seq 1 from 2020 over the seq 7 it had), and `minSeq` sets a floor by configuration;
 * - `expires_at` (signed, required) bounds how long a manifest counts: once the gate's clock
 *   passes it, the manifest stops counting (as if none had arrived: reason `manifest_expired`),
 *   and an already expired manifest is refused. A captured old manifest cannot be replayed
 *   forever.
 * `issued_at` is signed and shown to operators but not used for ordering: clocks across the
 * issuer and the fleet need not agree, `seq` must. Expiry does use the worker's clock: sign
 * with a lifetime well above your clock skew (the default is 7 days).
 *
 * Extra keys in the JSON are ignored (and not signed), leaving room for later fields.
 * `active_versions` may be empty: a signed "no version is active" stops every worker taking jobs.
 */
export interface SignedManifest {
  seq: number;
  active_versions: string[];
  issued_at: number;
  expires_at: number;
  signature: string;
}

/** The accepted manifest as the gate exposes it: frozen. */
export interface AcceptedManifest {
  readonly seq: number;
  readonly active_versions: readonly string[];
  readonly issued_at: number;
  readonly expires_at: number;
  readonly signature: string;
}

export interface SignManifestOptions {
  seq: number;
  activeVersions: readonly string[];
  /** Unix seconds. */
  issuedAt: number;
  /** Unix seconds after which the manifest stops counting. Default: `issuedAt` + 7 days. */
  expiresAt?: number;
  secret: string;
}

/** `signManifest`'s default lifetime: long enough to ride out a stalled pipeline, short enough to end a replay. */
export const DEFAULT_MANIFEST_TTL_SECONDS = 7 * 24 * 60 * 60;

/** The audit event the pool writes for every manifest its gate refuses. */
export const MANIFEST_REJECTED_EVENT = "worker.manifest_rejected";

/** Why a worker is not a member (what `/readyz` and the audit log say). */
export type MembershipReason = "no_manifest" | "manifest_expired" | "not_member";

/** What `GET /manifest` serves: the accepted manifest without its signature. */
export interface ManifestStatus {
  /** `none`: no valid manifest yet; `active`; `expired`: the accepted one passed its `expires_at`. */
  state: "none" | "active" | "expired";
  seq: number | null;
  active_versions: readonly string[] | null;
  issued_at: number | null;
  expires_at: number | null;
  source: string | null;
  accepted_at: number | null;
  /** True when the gate counts every version as a member while it has no valid manifest. */
  fail_open: boolean;
  /** The lowest seq that can still be accepted (from `minSeq` and the state file). */
  min_seq: number;
}

/**
 * What the pool needs from a membership source. `ManifestGate` implements it; structurally the
 * same as the interface `AgentPoolOptions.membership` declares in pool.ts.
 */
export interface MembershipGate {
  /** Whether a worker of this version may take new jobs. */
  isMember(version: string | null): boolean;
  /** Called after each change of membership; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Why this version is not a member (undefined while it is). */
  reason?(version: string | null): string | undefined;
  /** What `GET /manifest` serves. */
  status?(): unknown;
  /**
   * Called for every refused manifest; the pool writes `worker.manifest_rejected`. Rejections from
   * before the first subscriber (a source read at attach time) are kept and delivered on subscribe.
   */
  subscribeRejections?(listener: (rejection: ManifestRejection) => void): () => void;
}

export type ManifestRejectCode =
  | "malformed"
  | "unsigned"
  | "bad_signature"
  | "stale_seq"
  | "conflicting_seq"
  | "expired"
  | "unreadable";

/** A manifest that was not taken. Never carries the signature, the raw content or a secret. */
export interface ManifestRejection {
  source: string;
  code: ManifestRejectCode;
  reason: string;
  /** The offered seq, when it could be read. */
  seq?: number;
  /** The seq of the manifest kept, if any. */
  currentSeq?: number;
}

export interface ManifestOfferResult {
  /** True when the offer is authentic and current (including an identical re-offer). */
  accepted: boolean;
  /** True when the offer replaced the current manifest. */
  changed: boolean;
  code?: ManifestRejectCode;
  reason?: string;
}

/** Where a `ManifestSource` delivers what it read. */
export interface ManifestSink {
  /** A raw manifest: JSON text, bytes, or an already parsed object. */
  offer(raw: unknown): ManifestOfferResult;
  /** The source could not produce anything to offer (e.g. the file is missing). */
  unreadable(reason: string): void;
}

/** Something that delivers manifests over time: a file, a ConfigMap watch, a fixed value. */
export interface ManifestSource {
  /** Names the source in rejection reports, e.g. `file:/etc/openrtc/manifest.json`. */
  readonly name: string;
  /** Begins delivering. A source delivering its first manifest synchronously lets a worker start gated. */
  start(sink: ManifestSink): void;
  /** Stops delivering and releases watchers and timers. Idempotent. */
  close(): void;
}

export interface ManifestGateOptions {
  /** Same secrets as membership; any one may have signed the manifest (rotation). */
  secrets: readonly string[];
  /**
   * Fail open: while there is no valid manifest (none arrived yet, or the last one expired),
   * count every version as a member. Default false: a gate fails closed (no valid manifest → not
   * a member, `/readyz` 503 `no_manifest`), because a missing, garbage or forged manifest at
   * start-up must not make a leftover version a member. Choose `true` only when a missing
   * manifest must never stop a fleet taking calls, and accept that it then can't stop one either.
   */
  failOpen?: boolean;
  /** @deprecated The gate fails closed by default now; `requireManifest: false` means `failOpen: true`. */
  requireManifest?: boolean;
  /**
   * A file that keeps the highest accepted `seq` (and its digest) across restarts, written
   * atomically on every accepted change. Put it on storage that outlives the process (a volume,
   * not the container's tmp) and that only the worker's user can write. A missing file is a
   * first start; an unreadable or corrupt one is an error at construction (delete it to reset).
   */
  stateFile?: string;
  /** The lowest `seq` ever accepted (e.g. from the deploy pipeline). Default 0. */
  minSeq?: number;
  clock?: Clock;
  /** Rejections go to `warn`, accepted changes to `info` (default: `stderrLogger`, warnings only). */
  logger?: Logger;
  onRejected?: (rejection: ManifestRejection) => void;
  /** Attached at construction, in order; `close()` closes them. */
  sources?: readonly ManifestSource[];
}

const DOMAIN = "openrtc.manifest.v2";
const STATE_FORMAT = "openrtc.manifest-state.v1";
/** Bounds on what a manifest may hold: it is parsed from a file any deploy step can write. */
const MAX_MANIFEST_CHARS = 1 << 20;
const MAX_VERSIONS = 1000;
const MAX_VERSION_CHARS = 128;
const MAX_PENDING_REJECTIONS = 16;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Orders like Python's `sorted` on str: by code point, not by UTF-16 code unit. */
function compareCodePoints(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(j)!;
    if (x !== y) return x - y;
    i += x > 0xffff ? 2 : 1;
    j += y > 0xffff ? 2 : 1;
  }
  return a.length - i - (b.length - j);
}

/** The exact bytes a manifest signature covers (see the module comment). */
export function manifestCanonical(seq: number, activeVersions: readonly string[], issuedAt: number, expiresAt: number): string {
  const versions = [...activeVersions].sort(compareCodePoints).map(pythonJsonString).join(",");
  return `["${DOMAIN}",${seq},[${versions}],"${pythonFloatRepr(issuedAt)}","${pythonFloatRepr(expiresAt)}"]`;
}

type Checked<T> = { ok: true; value: T } | { ok: false; code: ManifestRejectCode; reason: string; seq?: number };

function fail(code: ManifestRejectCode, reason: string, seq?: number): Checked<never> {
  return seq === undefined ? { ok: false, code, reason } : { ok: false, code, reason, seq };
}

/** Structural checks shared by signing and verifying; returns a reason naming the bad field. */
function checkFields(seq: unknown, versions: unknown, issuedAt: unknown, expiresAt: unknown): string | undefined {
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
    return "seq must be a non-negative integer";
  }
  if (!Array.isArray(versions)) return "active_versions must be an array of version strings";
  if (versions.length > MAX_VERSIONS) return `active_versions lists more than ${MAX_VERSIONS} versions`;
  const seen = new Set<string>();
  for (let index = 0; index < versions.length; index++) {
    const version: unknown = versions[index];
    if (typeof version !== "string" || version.length === 0) {
      return `active_versions[${index}] must be a non-empty string`;
    }
    if (version.length > MAX_VERSION_CHARS) return `active_versions[${index}] is longer than ${MAX_VERSION_CHARS} characters`;
    if (seen.has(version)) return `active_versions lists ${JSON.stringify(version)} twice`;
    seen.add(version);
  }
  if (typeof issuedAt !== "number" || !Number.isFinite(issuedAt)) {
    return "issued_at must be a finite number of Unix seconds";
  }
  if (expiresAt === undefined) return "expires_at is missing (sign the manifest with a lifetime: signManifest sets one)";
  if (typeof expiresAt !== "number" || !Number.isFinite(expiresAt)) {
    return "expires_at must be a finite number of Unix seconds";
  }
  if (!(expiresAt > issuedAt)) return "expires_at must be later than issued_at";
  return undefined;
}

/** Builds a signed manifest (the JSON form to write to a file or ConfigMap). */
export function signManifest({ seq, activeVersions, issuedAt, expiresAt, secret }: SignManifestOptions): SignedManifest {
  const expires = expiresAt ?? (typeof issuedAt === "number" ? issuedAt + DEFAULT_MANIFEST_TTL_SECONDS : issuedAt);
  const problem = checkFields(seq, activeVersions, issuedAt, expires);
  if (problem !== undefined) {
    throw new TypeError(
      `signManifest: ${problem.replace("active_versions", "activeVersions").replaceAll("issued_at", "issuedAt").replaceAll("expires_at", "expiresAt")}`,
    );
  }
  const [key] = importSecrets([secret], "signManifest");
  const signature = createHmac("sha256", key!).update(manifestCanonical(seq, activeVersions, issuedAt, expires)).digest("hex");
  return { seq, active_versions: [...activeVersions], issued_at: issuedAt, expires_at: expires, signature };
}

function parse(raw: unknown): Checked<Record<string, unknown>> {
  let value = raw;
  if (raw instanceof Uint8Array) value = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8");
  if (typeof value === "string") {
    const text = value;
    if (text.length > MAX_MANIFEST_CHARS) return fail("malformed", `manifest is larger than ${MAX_MANIFEST_CHARS} characters`);
    if (text.trim() === "") return fail("malformed", "manifest is empty (a torn or partial write?)");
    try {
      value = JSON.parse(text);
    } catch {
      // The parser's message can quote the input (signature included), so it is not passed on.
      return fail("malformed", `manifest is not valid JSON (${text.length} characters; a torn or partial write?)`);
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail("malformed", "manifest must be a JSON object { seq, active_versions, issued_at, expires_at, signature }");
  }
  return { ok: true, value: value as Record<string, unknown> };
}

interface Verified {
  manifest: SignedManifest;
  canonical: string;
}

function verifyManifest(raw: unknown, keys: readonly KeyObject[]): Checked<Verified> {
  const parsed = parse(raw);
  if (!parsed.ok) return parsed;
  const { seq, active_versions: versions, issued_at: issuedAt, expires_at: expiresAt, signature } = parsed.value;
  const seqOrUndefined = typeof seq === "number" && Number.isSafeInteger(seq) ? seq : undefined;
  const problem = checkFields(seq, versions, issuedAt, expiresAt);
  if (problem !== undefined) return fail("malformed", `manifest ${problem}`, seqOrUndefined);
  if (signature === undefined || signature === null || signature === "") {
    return fail("unsigned", "manifest has no signature; sign it with a membership secret (signManifest)", seqOrUndefined);
  }
  if (!isHexDigest(signature)) {
    return fail("malformed", "manifest signature must be 64 lowercase hex characters (an HMAC-SHA256 digest)", seqOrUndefined);
  }
  const manifest: SignedManifest = {
    seq: seq as number,
    active_versions: [...(versions as string[])],
    issued_at: issuedAt as number,
    expires_at: expiresAt as number,
    signature,
  };
  const canonical = manifestCanonical(manifest.seq, manifest.active_versions, manifest.issued_at, manifest.expires_at);
  if (!hmacMatchesAny(keys, canonical, signature)) {
    return fail(
      "bad_signature",
      "manifest signature does not match any configured secret (signed with another secret, or its content was changed)",
      manifest.seq,
    );
  }
  return { ok: true, value: { manifest, canonical } };
}

/** What the state file holds: the highest accepted seq and the digest of that manifest. */
interface GateState {
  seq: number;
  digest: string;
}

function digestOf(canonical: string): string {
  return createHash("sha256").update(canonical).digest("hex");
}

function readState(file: string): GateState | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`ManifestGate: cannot read the state file ${file} (${(error as NodeJS.ErrnoException).code ?? "error"}); fix its permissions, or delete it to start over`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const state = value as { format?: unknown; seq?: unknown; digest?: unknown } | undefined;
  if (
    state === null ||
    typeof state !== "object" ||
    state.format !== STATE_FORMAT ||
    typeof state.seq !== "number" ||
    !Number.isSafeInteger(state.seq) ||
    state.seq < 0 ||
    typeof state.digest !== "string" ||
    !/^[0-9a-f]{64}$/.test(state.digest)
  ) {
    throw new Error(
      `ManifestGate: the state file ${file} is not a manifest state file (${STATE_FORMAT}); delete it to start over (the seq floor is then lost: set minSeq)`,
    );
  }
  return { seq: state.seq, digest: state.digest };
}

/** Write beside, fsync, rename: a crash leaves the old state or the new one, never a torn file. */
function writeState(file: string, state: GateState, now: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, `${JSON.stringify({ format: STATE_FORMAT, seq: state.seq, digest: state.digest, updated_at: now })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/**
 * Holds the newest authentic manifest and answers whether a version is active. Implements
 * `MembershipGate` for the pool. Offers come from attached sources (or `offer` directly); a
 * rejected offer never disturbs the current manifest.
 *
 * Membership, in one place:
 *
 *   no valid manifest (none yet, or the accepted one expired) → failOpen ? member : not a member
 *   a valid manifest                                          → member iff the version is listed
 */
export class ManifestGate implements MembershipGate {
  readonly failOpen: boolean;
  /** @deprecated `!failOpen`. */
  readonly requireManifest: boolean;
  readonly stateFile: string | undefined;
  readonly #keys: KeyObject[];
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onRejected: ((rejection: ManifestRejection) => void) | undefined;
  readonly #listeners = new Set<() => void>();
  readonly #rejectionListeners = new Set<(rejection: ManifestRejection) => void>();
  readonly #pendingRejections: ManifestRejection[] = [];
  readonly #sources: ManifestSource[] = [];
  readonly #minSeq: number;
  #floor: GateState | undefined;
  #current: AcceptedManifest | null = null;
  #canonical = "";
  #active = new Set<string>();
  #acceptedAt: number | null = null;
  #currentSource: string | null = null;
  #expired = false;
  // Whether subscribers were told about the current manifest's expiry (isMember may notice it first).
  #expiryAnnounced = false;
  #expiryTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ManifestGateOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("ManifestGate: options must be an object with at least { secrets }");
    }
    this.#keys = importSecrets(options.secrets, "ManifestGate");
    if (options.failOpen !== undefined && typeof options.failOpen !== "boolean") {
      throw new TypeError("ManifestGate: failOpen must be true or false");
    }
    this.failOpen = options.failOpen ?? options.requireManifest === false;
    this.requireManifest = !this.failOpen;
    const minSeq = options.minSeq ?? 0;
    if (typeof minSeq !== "number" || !Number.isSafeInteger(minSeq) || minSeq < 0) {
      throw new TypeError(`ManifestGate: minSeq must be a non-negative integer (got ${String(minSeq)})`);
    }
    this.#minSeq = minSeq;
    if (options.stateFile !== undefined && (typeof options.stateFile !== "string" || options.stateFile === "")) {
      throw new TypeError("ManifestGate: stateFile must be a non-empty path");
    }
    this.stateFile = options.stateFile === undefined ? undefined : path.resolve(options.stateFile);
    this.#floor = this.stateFile === undefined ? undefined : readState(this.stateFile);
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? stderrLogger;
    this.#onRejected = options.onRejected;
    for (const source of options.sources ?? []) this.attach(source);
  }

  /** The accepted manifest (frozen), or null before the first one. It may have expired: see `status()`. */
  get current(): AcceptedManifest | null {
    return this.#current;
  }

  /** When (clock seconds) the current manifest was accepted. */
  get acceptedAt(): number | null {
    return this.#acceptedAt;
  }

  /** The name of the source the current manifest came from. */
  get currentSource(): string | null {
    return this.#currentSource;
  }

  /** The lowest seq that can still be accepted. */
  get minSeq(): number {
    return Math.max(this.#minSeq, this.#floor?.seq ?? 0, this.#current?.seq ?? 0);
  }

  isMember(version: string | null | undefined): boolean {
    if (!this.#valid()) return this.failOpen;
    return typeof version === "string" && this.#active.has(version);
  }

  reason(version: string | null | undefined): MembershipReason | undefined {
    if (this.isMember(version)) return undefined;
    if (this.#current === null) return "no_manifest";
    if (this.#expired) return "manifest_expired";
    return "not_member";
  }

  status(): ManifestStatus {
    this.#valid();
    const m = this.#current;
    return {
      state: m === null ? "none" : this.#expired ? "expired" : "active",
      seq: m?.seq ?? null,
      active_versions: m?.active_versions ?? null,
      issued_at: m?.issued_at ?? null,
      expires_at: m?.expires_at ?? null,
      source: this.#currentSource,
      accepted_at: this.#acceptedAt,
      fail_open: this.failOpen,
      min_seq: this.minSeq,
    };
  }

  subscribe(listener: () => void): () => void {
    if (typeof listener !== "function") throw new TypeError("ManifestGate.subscribe: listener must be a function");
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  subscribeRejections(listener: (rejection: ManifestRejection) => void): () => void {
    if (typeof listener !== "function") throw new TypeError("ManifestGate.subscribeRejections: listener must be a function");
    this.#rejectionListeners.add(listener);
    for (const rejection of this.#pendingRejections.splice(0)) this.#call("rejection listener", () => listener(rejection));
    return () => {
      this.#rejectionListeners.delete(listener);
    };
  }

  /**
   * Re-checks the current manifest's expiry against the clock and tells subscribers when it
   * just expired. A timer does this at `expires_at`; call it yourself with a manual clock.
   */
  refresh(): void {
    this.#valid();
    if (this.#expired && !this.#expiryAnnounced) {
      this.#expiryAnnounced = true;
      this.#log("warn", "the active manifest expired; it no longer counts (reason manifest_expired)", {
        source: this.#currentSource,
        seq: this.#current?.seq,
        expires_at: this.#current?.expires_at,
        fail_open: this.failOpen,
      });
      this.#notify();
    }
  }

  /** Offers a manifest (JSON text, bytes or object); `source` names it in reports. Never throws. */
  offer(raw: unknown, source: string): ManifestOfferResult {
    let checked: Checked<Verified>;
    try {
      checked = verifyManifest(raw, this.#keys);
    } catch {
      // An object with throwing getters, a Proxy, ...: whatever it is, it is not a manifest.
      checked = fail("malformed", "manifest could not be read as a plain JSON object");
    }
    if (!checked.ok) return this.#reject(source, checked.code, checked.reason, checked.seq);
    const { manifest, canonical } = checked.value;
    const now = this.#clock();
    const current = this.#current;
    if (current !== null && manifest.seq === current.seq && canonical === this.#canonical) {
      return { accepted: !this.#expired, changed: false, ...(this.#expired ? { code: "expired" as const, reason: "manifest has expired" } : {}) };
    }
    const floor = Math.max(this.#minSeq, this.#floor?.seq ?? 0);
    if (manifest.seq < floor || (current !== null && manifest.seq < current.seq)) {
      const against = current !== null && current.seq >= floor ? `the current seq ${current.seq}` : `the lowest acceptable seq ${floor} (minSeq / state file)`;
      return this.#reject(source, "stale_seq", `manifest seq ${manifest.seq} is older than ${against}`, manifest.seq);
    }
    const digest = digestOf(canonical);
    if (
      (current !== null && manifest.seq === current.seq) ||
      (current === null && this.#floor !== undefined && manifest.seq === this.#floor.seq && digest !== this.#floor.digest)
    ) {
      return this.#reject(
        source,
        "conflicting_seq",
        `manifest seq ${manifest.seq} equals the current seq but its content differs; a new manifest needs a higher seq`,
        manifest.seq,
      );
    }
    if (!(manifest.expires_at > now)) {
      return this.#reject(source, "expired", `manifest expired at ${manifest.expires_at} (now ${now}); re-sign it with a later expires_at`, manifest.seq);
    }
    if (this.stateFile !== undefined && (this.#floor === undefined || this.#floor.seq !== manifest.seq)) {
      try {
        writeState(this.stateFile, { seq: manifest.seq, digest }, now);
      } catch (error) {
        // Refusing an authentic, newer manifest would keep an older one in force: take it, and
        // say loudly that the floor did not persist.
        this.#log("error", "could not write the manifest state file; the seq floor will not survive a restart", {
          state_file: this.stateFile,
          err: describeError(error),
        });
      }
    }
    this.#floor = { seq: manifest.seq, digest };
    const previous = current === null ? null : current.seq;
    this.#current = Object.freeze({ ...manifest, active_versions: Object.freeze([...manifest.active_versions]) });
    this.#canonical = canonical;
    this.#active = new Set(manifest.active_versions);
    this.#acceptedAt = now;
    this.#currentSource = source;
    this.#expired = false;
    this.#expiryAnnounced = false;
    this.#armExpiry(manifest.expires_at - now);
    this.#log("info", "manifest accepted", {
      source,
      seq: manifest.seq,
      previous_seq: previous,
      active_versions: manifest.active_versions,
      issued_at: manifest.issued_at,
      expires_at: manifest.expires_at,
    });
    this.#notify();
    return { accepted: true, changed: true };
  }

  /** Starts a source delivering to this gate; `close()` closes it. */
  attach<S extends ManifestSource>(source: S): S {
    if (this.#closed) throw new Error("ManifestGate: closed; create a new gate to attach sources");
    this.#sources.push(source);
    source.start({
      offer: (raw) => this.offer(raw, source.name),
      unreadable: (reason) => {
        this.#reject(source.name, "unreadable", reason);
      },
    });
    return source;
  }

  /** Closes every attached source and the expiry timer. The current manifest stays readable. */
  close(): void {
    this.#closed = true;
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    for (const source of this.#sources.splice(0)) this.#call("source close", () => source.close());
  }

  /** Whether a current, unexpired manifest exists (and records its expiry when it passed). */
  #valid(): boolean {
    if (this.#current === null) return false;
    if (!this.#expired && !(this.#current.expires_at > this.#clock())) this.#expired = true;
    return !this.#expired;
  }

  #armExpiry(seconds: number): void {
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    if (this.#closed) return;
    // Past the longest timer, re-arm on the way; the clock check in #valid is what counts.
    this.#expiryTimer = setTimeout(() => {
      this.#expiryTimer = undefined;
      this.refresh();
      if (!this.#expired && this.#current !== null) this.#armExpiry(this.#current.expires_at - this.#clock());
    }, Math.min(Math.max(0, seconds * 1000) + 5, MAX_TIMER_MS));
    this.#expiryTimer.unref();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) this.#call("membership listener", listener);
  }

  // Listeners and callbacks are user code: one that throws is logged, never the caller's problem.
  #call(what: string, fn: () => unknown): void {
    try {
      const result = fn();
      if (result instanceof Promise) result.catch((error: unknown) => this.#log("warn", `manifest ${what} failed`, { error: describeError(error) }));
    } catch (error) {
      this.#log("warn", `manifest ${what} threw`, { error: describeError(error) });
    }
  }

  // A throwing logger must not turn a rejected manifest into a crash of the caller.
  #log(level: "warn" | "info" | "error", message: string, fields: Record<string, unknown>): void {
    try {
      this.#logger[level](fields, message);
    } catch {
      // Nowhere left to report to.
    }
  }

  #reject(source: string, code: ManifestRejectCode, reason: string, seq?: number): ManifestOfferResult {
    const rejection: ManifestRejection = { source, code, reason };
    if (seq !== undefined) rejection.seq = seq;
    if (this.#current !== null) rejection.currentSeq = this.#current.seq;
    this.#log("warn", `manifest from ${source} rejected (${code}): ${reason}`, { ...rejection });
    if (this.#onRejected !== undefined) this.#call("onRejected callback", () => this.#onRejected!({ ...rejection }));
    if (this.#rejectionListeners.size === 0) {
      // Kept for the pool, which usually subscribes after the first (synchronous) read.
      if (this.#pendingRejections.length >= MAX_PENDING_REJECTIONS) this.#pendingRejections.shift();
      this.#pendingRejections.push({ ...rejection });
    } else {
      for (const listener of [...this.#rejectionListeners]) this.#call("rejection listener", () => listener({ ...rejection }));
    }
    return { accepted: false, changed: false, code, reason };
  }
}

/** A manifest fixed at start-up (tests, or a version list baked into the deploy). */
export function staticManifest(manifest: SignedManifest | string, options: { name?: string } = {}): ManifestSource {
  return {
    name: options.name ?? "static",
    start: (sink) => {
      sink.offer(manifest);
    },
    close: () => {},
  };
}

export interface FileManifestOptions {
  /** Re-read interval; the fallback for when file events are missed. Default 2000 ms. */
  pollIntervalMs?: number;
  /** Also react to file-system events at once (default true). */
  watch?: boolean;
}

/**
 * A manifest file that may change at run time. The first read is synchronous (a worker starts
 * already gated); later reads are triggered by `fs.watch` on the *directory* (an atomic rename or
 * a Kubernetes ConfigMap symlink swap replaces the file's inode, so a watch on the file itself
 * goes deaf) and by a poll, because watch events can be missed or unsupported (network file
 * systems). A read identical to the previous one is not offered again, so polling is quiet.
 * Neither the watcher nor the timer keeps the process alive.
 */
export function fileManifest(filePath: string, options: FileManifestOptions = {}): ManifestSource {
  if (typeof filePath !== "string" || filePath.length === 0) {
    throw new TypeError("fileManifest: path must be a non-empty string naming the manifest JSON file");
  }
  const pollIntervalMs = options.pollIntervalMs ?? 2000;
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new RangeError(`fileManifest: pollIntervalMs must be a positive number of milliseconds (got ${String(pollIntervalMs)})`);
  }
  return new FileManifestSource(path.resolve(filePath), pollIntervalMs, options.watch ?? true);
}

class FileManifestSource implements ManifestSource {
  readonly name: string;
  readonly #path: string;
  readonly #pollIntervalMs: number;
  readonly #useWatch: boolean;
  #sink: ManifestSink | undefined;
  #last: string | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reading = false;
  #readAgain = false;
  #closed = false;

  constructor(filePath: string, pollIntervalMs: number, useWatch: boolean) {
    this.name = `file:${filePath}`;
    this.#path = filePath;
    this.#pollIntervalMs = pollIntervalMs;
    this.#useWatch = useWatch;
  }

  start(sink: ManifestSink): void {
    if (this.#sink !== undefined) throw new Error(`${this.name}: already started; create one source per gate`);
    if (this.#closed) throw new Error(`${this.name}: closed`);
    this.#sink = sink;
    let text: string | undefined;
    try {
      text = readFileSync(this.#path, "utf8");
    } catch (error) {
      this.#deliverError(error);
    }
    if (text !== undefined) this.#deliver(text);
    if (this.#useWatch) this.#startWatch();
    this.#timer = setInterval(() => {
      // Re-arm a watch that broke or could not start (e.g. the directory appeared later).
      if (this.#useWatch && this.#watcher === undefined) this.#startWatch();
      this.#read();
    }, this.#pollIntervalMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #startWatch(): void {
    try {
      const watcher = watch(path.dirname(this.#path), { persistent: false }, () => this.#read());
      // A watch that breaks (directory removed, inotify limits) leaves the poll in charge.
      watcher.on("error", () => {
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = undefined;
      });
      this.#watcher = watcher;
    } catch {
      // No watch support here (or the directory is missing yet): the poll covers it.
    }
  }

  #read(): void {
    if (this.#closed) return;
    if (this.#reading) {
      this.#readAgain = true;
      return;
    }
    this.#reading = true;
    readFile(this.#path, "utf8")
      .then(
        (text) => this.#deliver(text),
        (error: unknown) => this.#deliverError(error),
      )
      .catch(() => {
        // The gate never throws from offer; this only guards against a custom sink that does.
      })
      .finally(() => {
        this.#reading = false;
        if (this.#readAgain) {
          this.#readAgain = false;
          this.#read();
        }
      });
  }

  #deliver(text: string): void {
    if (this.#closed || text === this.#last) return;
    this.#last = text;
    this.#sink!.offer(text);
  }

  #deliverError(error: unknown): void {
    const code = (error as NodeJS.ErrnoException | undefined)?.code ?? "error";
    const key = `\0error:${code}`;
    if (this.#closed || key === this.#last) return;
    this.#last = key;
    this.#sink!.unreadable(`cannot read ${this.#path} (${code}); keeping the current manifest`);
  }
}
