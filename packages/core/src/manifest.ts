import { createHmac } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { readFileSync, watch } from "node:fs";
import type { FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { systemClock } from "./clock.ts";
import type { Clock } from "./clock.ts";
import { stderrLogger } from "./logger.ts";
import type { Logger } from "./logger.ts";
import { hmacMatchesAny, importSecrets, isHexDigest, pythonFloatRepr, pythonJsonString } from "./membership.ts";

/**
 * The active-version manifest: which deployment versions may take new jobs.
 *
 * Wire format (JSON, e.g. a file mounted from a ConfigMap):
 *
 *     { "seq": 7, "active_versions": ["v2.0.0"], "issued_at": 1763800000.5, "signature": "<hex>" }
 *
 * `signature` is hex HMAC-SHA256, under one of the membership secrets, of
 *
 *     json.dumps(["openrtc.manifest.v1", seq, sorted(active_versions), repr(float(issued_at))], separators=(",", ":"))
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
 * - anything unreadable, torn, malformed or unsigned is rejected and the current manifest kept.
 * `issued_at` is signed and shown to operators but not used for ordering: clocks across the
 * issuer and the fleet need not agree, `seq` must.
 *
 * Extra keys in the JSON are ignored (and not signed), leaving room for later fields.
 * `active_versions` may be empty: a signed "no version is active" stops every worker taking jobs.
 */
export interface SignedManifest {
  seq: number;
  active_versions: string[];
  issued_at: number;
  signature: string;
}

/** The accepted manifest as the gate exposes it: frozen. */
export interface AcceptedManifest {
  readonly seq: number;
  readonly active_versions: readonly string[];
  readonly issued_at: number;
  readonly signature: string;
}

export interface SignManifestOptions {
  seq: number;
  activeVersions: readonly string[];
  /** Unix seconds. */
  issuedAt: number;
  secret: string;
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
}

export type ManifestRejectCode = "malformed" | "unsigned" | "bad_signature" | "stale_seq" | "conflicting_seq" | "unreadable";

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
   * Without a manifest yet, every version is a member (a worker that was never told otherwise
   * keeps working: a missing ConfigMap must not stop a fleet). With `requireManifest: true`,
   * no version is a member until the first authentic manifest arrives (fail closed).
   */
  requireManifest?: boolean;
  clock?: Clock;
  /** Rejections go to `warn`, accepted changes to `info` (default: `stderrLogger`, warnings only). */
  logger?: Logger;
  onRejected?: (rejection: ManifestRejection) => void;
  /** Attached at construction, in order; `close()` closes them. */
  sources?: readonly ManifestSource[];
}

const DOMAIN = "openrtc.manifest.v1";

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
export function manifestCanonical(seq: number, activeVersions: readonly string[], issuedAt: number): string {
  const versions = [...activeVersions].sort(compareCodePoints).map(pythonJsonString).join(",");
  return `["${DOMAIN}",${seq},[${versions}],"${pythonFloatRepr(issuedAt)}"]`;
}

type Checked<T> = { ok: true; value: T } | { ok: false; code: ManifestRejectCode; reason: string; seq?: number };

function fail(code: ManifestRejectCode, reason: string, seq?: number): Checked<never> {
  return seq === undefined ? { ok: false, code, reason } : { ok: false, code, reason, seq };
}

/** Structural checks shared by signing and verifying; returns a reason naming the bad field. */
function checkFields(seq: unknown, versions: unknown, issuedAt: unknown): string | undefined {
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
    return "seq must be a non-negative integer";
  }
  if (!Array.isArray(versions)) return "active_versions must be an array of version strings";
  const seen = new Set<string>();
  for (const [index, version] of versions.entries()) {
    if (typeof version !== "string" || version.length === 0) {
      return `active_versions[${index}] must be a non-empty string`;
    }
    if (seen.has(version)) return `active_versions lists ${JSON.stringify(version)} twice`;
    seen.add(version);
  }
  if (typeof issuedAt !== "number" || !Number.isFinite(issuedAt)) {
    return "issued_at must be a finite number of Unix seconds";
  }
  return undefined;
}

/** Builds a signed manifest (the JSON form to write to a file or ConfigMap). */
export function signManifest({ seq, activeVersions, issuedAt, secret }: SignManifestOptions): SignedManifest {
  const problem = checkFields(seq, activeVersions, issuedAt);
  if (problem !== undefined) throw new TypeError(`signManifest: ${problem.replace("active_versions", "activeVersions").replace("issued_at", "issuedAt")}`);
  const [key] = importSecrets([secret], "signManifest");
  const signature = createHmac("sha256", key!).update(manifestCanonical(seq, activeVersions, issuedAt)).digest("hex");
  return { seq, active_versions: [...activeVersions], issued_at: issuedAt, signature };
}

function parse(raw: unknown): Checked<Record<string, unknown>> {
  let value = raw;
  if (raw instanceof Uint8Array) value = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8");
  if (typeof value === "string") {
    const text = value;
    if (text.trim() === "") return fail("malformed", "manifest is empty (a torn or partial write?)");
    try {
      value = JSON.parse(text);
    } catch {
      // The parser's message can quote the input (signature included), so it is not passed on.
      return fail("malformed", `manifest is not valid JSON (${text.length} characters; a torn or partial write?)`);
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return fail("malformed", "manifest must be a JSON object { seq, active_versions, issued_at, signature }");
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
  const { seq, active_versions: versions, issued_at: issuedAt, signature } = parsed.value;
  const seqOrUndefined = typeof seq === "number" && Number.isSafeInteger(seq) ? seq : undefined;
  const problem = checkFields(seq, versions, issuedAt);
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
    signature,
  };
  const canonical = manifestCanonical(manifest.seq, manifest.active_versions, manifest.issued_at);
  if (!hmacMatchesAny(keys, canonical, signature)) {
    return fail(
      "bad_signature",
      "manifest signature does not match any configured secret (signed with another secret, or its content was changed)",
      manifest.seq,
    );
  }
  return { ok: true, value: { manifest, canonical } };
}

/**
 * Holds the newest authentic manifest and answers whether a version is active. Implements
 * `MembershipGate` for the pool. Offers come from attached sources (or `offer` directly); a
 * rejected offer never disturbs the current manifest.
 */
export class ManifestGate implements MembershipGate {
  readonly requireManifest: boolean;
  readonly #keys: KeyObject[];
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onRejected: ((rejection: ManifestRejection) => void) | undefined;
  readonly #listeners = new Set<() => void>();
  readonly #sources: ManifestSource[] = [];
  #current: AcceptedManifest | null = null;
  #canonical = "";
  #active = new Set<string>();
  #acceptedAt: number | null = null;
  #currentSource: string | null = null;
  #closed = false;

  constructor(options: ManifestGateOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("ManifestGate: options must be an object with at least { secrets }");
    }
    this.#keys = importSecrets(options.secrets, "ManifestGate");
    this.requireManifest = options.requireManifest ?? false;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? stderrLogger;
    this.#onRejected = options.onRejected;
    for (const source of options.sources ?? []) this.attach(source);
  }

  /** The accepted manifest (frozen), or null before the first one. */
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

  isMember(version: string | null | undefined): boolean {
    if (this.#current === null) return !this.requireManifest;
    return typeof version === "string" && this.#active.has(version);
  }

  subscribe(listener: () => void): () => void {
    if (typeof listener !== "function") throw new TypeError("ManifestGate.subscribe: listener must be a function");
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Offers a manifest (JSON text, bytes or object); `source` names it in reports. */
  offer(raw: unknown, source: string): ManifestOfferResult {
    const checked = verifyManifest(raw, this.#keys);
    if (!checked.ok) return this.#reject(source, checked.code, checked.reason, checked.seq);
    const { manifest, canonical } = checked.value;
    const current = this.#current;
    if (current !== null) {
      if (manifest.seq < current.seq) {
        return this.#reject(source, "stale_seq", `manifest seq ${manifest.seq} is older than the current seq ${current.seq}`, manifest.seq);
      }
      if (manifest.seq === current.seq) {
        if (canonical === this.#canonical) return { accepted: true, changed: false };
        return this.#reject(
          source,
          "conflicting_seq",
          `manifest seq ${manifest.seq} equals the current seq but its content differs; a new manifest needs a higher seq`,
          manifest.seq,
        );
      }
    }
    const previous = current === null ? null : current.seq;
    this.#current = Object.freeze({ ...manifest, active_versions: Object.freeze([...manifest.active_versions]) });
    this.#canonical = canonical;
    this.#active = new Set(manifest.active_versions);
    this.#acceptedAt = this.#clock();
    this.#currentSource = source;
    this.#log("info", "manifest accepted", {
      source,
      seq: manifest.seq,
      previous_seq: previous,
      active_versions: manifest.active_versions,
      issued_at: manifest.issued_at,
    });
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        this.#log("warn", "membership listener threw", { error: error instanceof Error ? error.message : String(error) });
      }
    }
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

  /** Closes every attached source. The current manifest stays readable. */
  close(): void {
    this.#closed = true;
    for (const source of this.#sources.splice(0)) source.close();
  }

  // A throwing logger must not turn a rejected manifest into a crash of the caller.
  #log(level: "warn" | "info", message: string, fields: Record<string, unknown>): void {
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
    try {
      this.#onRejected?.(rejection);
    } catch (error) {
      this.#log("warn", "manifest onRejected callback threw", { error: error instanceof Error ? error.message : String(error) });
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
