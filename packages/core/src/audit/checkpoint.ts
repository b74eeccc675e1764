import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import type { KeyObject } from "node:crypto";

/**
 * Signed checkpoints.
 *
 * The hash chain alone shows that a log was changed only to someone who cannot recompute it:
 * whoever can write the file can also rewrite every hash after an edit, or cut the tail. A
 * checkpoint is a record in the chain (event `audit.checkpoint`) that signs the chain's head
 * with a key the writer of the file does not hold:
 *
 *   checkpoint_size   seq of the last record covered (the checkpoint's own seq - 1)
 *   checkpoint_head   hash of that record (the checkpoint's own prev_hash)
 *   checkpoint_time   when it was signed (Unix seconds; also the record's `timestamp`)
 *   hmac_key_id, hmac             HMAC-SHA256 (hex) with the first of `hmacSecrets`
 *   ed25519_key_id, ed25519_sig   Ed25519 signature (base64) — verifiers need only the public key
 *
 * Both signatures cover the same message, the UTF-8 bytes of the JSON array
 * `["openrtc.audit.checkpoint.v2", origin, size, head, time]` (compact, as JSON.stringify writes
 * it). Because every hash commits to all earlier records of the origin, a valid signature over
 * (origin, size, head) vouches for records 1..size; the time says when, so a verifier can tell
 * a stale checkpoint from a fresh one.
 *
 * The key need not live in the writer: with `signer` (a KMS, a separate signer process) the
 * checkpoint record carries the claim (size, head, time) at once and the signature follows when
 * the signer answers, as an `audit.checkpoint_signature` record naming `checkpoint_seq`.
 * Verifiers may bind keys to origins (`keyOrigins`), so one worker's key cannot vouch for
 * another worker's chain. Key ids let a verifier holding several keys
 * (rotation) pick the right one: `hmac_key_id` is the first 16 hex digits of
 * SHA-256("openrtc.audit.hmac-key-id\n" + secret), `ed25519_key_id` the first 16 hex digits of
 * SHA-256 of the public key's SPKI DER encoding (or a caller-chosen id).
 *
 * A cut tail is caught by keeping the latest checkpoint elsewhere (`hooks.onCheckpoint`) and
 * verifying with `expectCheckpoint`: the log must still reach `size` with the same `head`.
 */
export const CHECKPOINT_EVENT = "audit.checkpoint";
export const CHECKPOINT_SIGNATURE_EVENT = "audit.checkpoint_signature";
const MESSAGE_TAG = "openrtc.audit.checkpoint.v2";

/**
 * Signs checkpoints outside the writer: a KMS call, a request to a signer process. `sign`
 * receives the exact message bytes and returns the signature (raw bytes, or the base64 / hex text
 * of it). Ed25519: the verifier needs only the public key. HMAC-SHA256: `keyId` must be
 * `hmacKeyId(secret)` so verifiers holding the secret find it.
 */
export interface ExternalCheckpointSigner {
  algorithm: "ed25519" | "hmac-sha256";
  keyId: string;
  sign(message: Uint8Array): Promise<Uint8Array | string> | Uint8Array | string;
  /** Give up on one signature after this many ms (the checkpoint stays unsigned). Default 10_000. */
  timeoutMs?: number;
}

export interface AuditCheckpointOptions {
  /** Write a checkpoint once this many records were emitted since the last one. Default 1000 unless `intervalSeconds` is set. */
  every?: number;
  /** Also write one every this many seconds, if records were emitted since the last one. */
  intervalSeconds?: number;
  /** HMAC secrets: the first signs; list the previous one too while rotating (verifiers use the list). */
  hmacSecrets?: readonly string[];
  /** Ed25519 private key (KeyObject or PEM). */
  ed25519PrivateKey?: KeyObject | string;
  /** `ed25519_key_id` to record; default derived from the public key. */
  keyId?: string;
  /** Sign outside this process (a KMS, a signer process), so the key never lives with the writer. */
  signer?: ExternalCheckpointSigner;
}

/** A checkpoint kept apart from the log, e.g. the last one `hooks.onCheckpoint` saw. */
export interface ExpectedCheckpoint {
  origin: string;
  size: number;
  head: string;
}

export function checkpointMessage(origin: string, size: number, head: string, time: number): Buffer {
  return Buffer.from(JSON.stringify([MESSAGE_TAG, origin, size, head, time]), "utf8");
}

export function hmacKeyId(secret: string): string {
  return createHash("sha256").update(`openrtc.audit.hmac-key-id\n${secret}`, "utf8").digest("hex").slice(0, 16);
}

export function ed25519KeyId(publicKey: KeyObject): string {
  return createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex").slice(0, 16);
}

function ed25519Key(key: unknown, kind: "private" | "public", owner: string): KeyObject {
  let object: KeyObject;
  try {
    if (typeof key === "string" || Buffer.isBuffer(key)) {
      object = kind === "private" ? createPrivateKey(key) : createPublicKey(key);
    } else if (key !== null && typeof key === "object" && "asymmetricKeyType" in key) {
      object = key as KeyObject;
      if (kind === "public" && object.type === "private") object = createPublicKey(object);
    } else {
      throw new TypeError("not a KeyObject or PEM string");
    }
  } catch (error) {
    throw new TypeError(`${owner}: cannot read the Ed25519 ${kind} key (${(error as Error).message}); pass a KeyObject or a PEM string`);
  }
  if (object.asymmetricKeyType !== "ed25519" || (kind === "private" && object.type !== "private")) {
    throw new TypeError(`${owner}: expected an Ed25519 ${kind} key, got ${object.type} ${object.asymmetricKeyType ?? "symmetric"} key`);
  }
  return object;
}

function checkSecrets(secrets: unknown, owner: string): string[] {
  if (!Array.isArray(secrets) || secrets.length === 0) {
    throw new TypeError(`${owner}: hmacSecrets must be a non-empty array of strings (the current secret first)`);
  }
  secrets.forEach((s: unknown, i) => {
    if (typeof s !== "string" || s.length === 0) throw new TypeError(`${owner}: hmacSecrets[${i}] must be a non-empty string`);
  });
  return secrets as string[];
}

/** Fields a checkpoint record carries after `checkpoint_size` and `checkpoint_head`. */
export type CheckpointSignature = Record<string, string>;

export class CheckpointSigner {
  readonly every: number | undefined;
  readonly external: ExternalCheckpointSigner | undefined;
  readonly intervalSeconds: number | undefined;
  readonly #hmac: { secret: string; id: string } | undefined;
  readonly #ed25519: { key: KeyObject; id: string } | undefined;

  constructor(options: AuditCheckpointOptions) {
    const owner = "AuditLog checkpoint";
    if (options.hmacSecrets === undefined && options.ed25519PrivateKey === undefined && options.signer === undefined) {
      throw new TypeError(`${owner}: give hmacSecrets, ed25519PrivateKey or an external signer; an unsigned checkpoint proves nothing`);
    }
    if (options.signer !== undefined) {
      const x = options.signer as Partial<ExternalCheckpointSigner>;
      if (x === null || typeof x !== "object" || typeof x.sign !== "function" || (x.algorithm !== "ed25519" && x.algorithm !== "hmac-sha256") || typeof x.keyId !== "string" || x.keyId === "") {
        throw new TypeError(`${owner}: signer must be { algorithm: "ed25519" | "hmac-sha256", keyId: non-empty string, sign(message) }`);
      }
      if (x.timeoutMs !== undefined && !(typeof x.timeoutMs === "number" && x.timeoutMs > 0)) {
        throw new TypeError(`${owner}: signer.timeoutMs must be a positive number of ms`);
      }
      this.external = options.signer;
    }
    const { every, intervalSeconds } = options;
    if (every !== undefined && (!Number.isSafeInteger(every) || every < 1)) {
      throw new TypeError(`${owner}: every must be a positive integer (records), got ${String(every)}`);
    }
    if (intervalSeconds !== undefined && (typeof intervalSeconds !== "number" || !(intervalSeconds > 0) || !Number.isFinite(intervalSeconds))) {
      throw new TypeError(`${owner}: intervalSeconds must be a positive number, got ${String(intervalSeconds)}`);
    }
    this.every = every ?? (intervalSeconds === undefined ? 1000 : undefined);
    this.intervalSeconds = intervalSeconds;
    if (options.hmacSecrets !== undefined) {
      const secret = checkSecrets(options.hmacSecrets, owner)[0] as string;
      this.#hmac = { secret, id: hmacKeyId(secret) };
    }
    if (options.ed25519PrivateKey !== undefined) {
      const key = ed25519Key(options.ed25519PrivateKey, "private", owner);
      if (options.keyId !== undefined && (typeof options.keyId !== "string" || options.keyId === "")) {
        throw new TypeError(`${owner}: keyId must be a non-empty string`);
      }
      this.#ed25519 = { key, id: options.keyId ?? ed25519KeyId(createPublicKey(key)) };
    }
  }

  /** Inline signatures with the local keys (none when only an external signer is configured). */
  sign(origin: string, size: number, head: string, time: number): CheckpointSignature {
    const message = checkpointMessage(origin, size, head, time);
    const out: CheckpointSignature = {};
    if (this.#hmac) {
      out.hmac_key_id = this.#hmac.id;
      out.hmac = createHmac("sha256", this.#hmac.secret).update(message).digest("hex");
    }
    if (this.#ed25519) {
      out.ed25519_key_id = this.#ed25519.id;
      out.ed25519_sig = sign(null, message, this.#ed25519.key).toString("base64");
    }
    return out;
  }

  /** The external signer's signature, as the fields of an `audit.checkpoint_signature` record. */
  async signExternally(origin: string, size: number, head: string, time: number): Promise<CheckpointSignature> {
    const x = this.external as ExternalCheckpointSigner;
    const message = checkpointMessage(origin, size, head, time);
    const timeoutMs = x.timeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`external checkpoint signer ${x.keyId} did not answer within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
    });
    let raw: Uint8Array | string;
    try {
      raw = await Promise.race([Promise.resolve().then(() => x.sign(message)), timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (x.algorithm === "ed25519") {
      const sig = typeof raw === "string" ? raw : Buffer.from(raw).toString("base64");
      return { ed25519_key_id: x.keyId, ed25519_sig: sig };
    }
    const mac = typeof raw === "string" ? raw.toLowerCase() : Buffer.from(raw).toString("hex");
    return { hmac_key_id: x.keyId, hmac: mac };
  }
}

export interface CheckpointCheck {
  /** Signature kinds that verified ("hmac", "ed25519"). */
  verifiedBy: string[];
  /** Why the checkpoint is rejected, if it is. */
  problem?: string;
}

/** The keys a verifier trusts, indexed by key id. */
export class CheckpointKeys {
  readonly #hmac = new Map<string, string>();
  readonly #ed25519 = new Map<string, KeyObject>();
  readonly #origins: Map<string, readonly string[]> | undefined;

  /**
   * `keyOrigins`: key id → the origins it may sign (exact names, or a prefix ending in `*`).
   * When given, a key not listed signs no origin.
   */
  constructor(hmacSecrets?: readonly string[], ed25519PublicKeys?: readonly (KeyObject | string)[], keyOrigins?: Readonly<Record<string, readonly string[]>>) {
    const owner = "verifyAuditLog";
    if (keyOrigins !== undefined) {
      if (keyOrigins === null || typeof keyOrigins !== "object") throw new TypeError(`${owner}: keyOrigins must map key ids to arrays of origins`);
      this.#origins = new Map();
      for (const [id, list] of Object.entries(keyOrigins)) {
        if (!Array.isArray(list) || list.some((o) => typeof o !== "string" || o === "")) {
          throw new TypeError(`${owner}: keyOrigins[${JSON.stringify(id)}] must be an array of origin names (a trailing * matches a prefix)`);
        }
        this.#origins.set(id, list);
      }
    }
    if (hmacSecrets !== undefined) for (const s of checkSecrets(hmacSecrets, owner)) this.#hmac.set(hmacKeyId(s), s);
    if (ed25519PublicKeys !== undefined) {
      if (!Array.isArray(ed25519PublicKeys)) throw new TypeError(`${owner}: ed25519PublicKeys must be an array`);
      for (const k of ed25519PublicKeys) {
        const key = ed25519Key(k, "public", owner);
        this.#ed25519.set(ed25519KeyId(key), key);
      }
    }
  }

  get any(): boolean {
    return this.#hmac.size > 0 || this.#ed25519.size > 0;
  }

  /** Whether the key with this id may vouch for `origin` (see `keyOrigins`). */
  mayVouch(keyId: unknown, origin: string): boolean {
    if (this.#origins === undefined) return true;
    const list = typeof keyId === "string" ? this.#origins.get(keyId) : undefined;
    return list !== undefined && list.some((o) => (o.endsWith("*") ? origin.startsWith(o.slice(0, -1)) : o === origin));
  }

  /** Checks the signatures of a checkpoint record whose size/head were already checked. */
  check(record: Readonly<Record<string, unknown>>, origin: string, size: number, head: string, time: number): CheckpointCheck {
    const verifiedBy: string[] = [];
    const message = checkpointMessage(origin, size, head, time);
    const { hmac, hmac_key_id: hmacId, ed25519_sig: sig, ed25519_key_id: edId } = record;
    for (const id of [hmac === undefined ? undefined : hmacId, sig === undefined ? undefined : edId]) {
      if (id !== undefined && !this.mayVouch(id, origin)) {
        return { verifiedBy, problem: `key ${String(id)} is not allowed to sign origin ${origin} (keyOrigins)` };
      }
    }
    if (hmac !== undefined && this.#hmac.size > 0) {
      const secret = typeof hmacId === "string" ? this.#hmac.get(hmacId) : undefined;
      if (secret === undefined) return { verifiedBy, problem: `its HMAC key id ${String(hmacId)} matches none of the secrets given` };
      const expected = createHmac("sha256", secret).update(message).digest();
      const given = typeof hmac === "string" && /^[0-9a-f]{64}$/.test(hmac) ? Buffer.from(hmac, "hex") : Buffer.alloc(0);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { verifiedBy, problem: "its HMAC does not match" };
      verifiedBy.push("hmac");
    }
    if (sig !== undefined && this.#ed25519.size > 0) {
      // A caller-chosen key id cannot be derived from the key: try them all then.
      const byId = typeof edId === "string" ? this.#ed25519.get(edId) : undefined;
      const candidates = byId ? [byId] : [...this.#ed25519.values()];
      const signature = typeof sig === "string" ? Buffer.from(sig, "base64") : Buffer.alloc(0);
      const ok = candidates.some((key) => {
        try {
          return verify(null, message, key, signature);
        } catch {
          return false;
        }
      });
      if (!ok) {
        return { verifiedBy, problem: byId ? "its Ed25519 signature does not verify" : `its Ed25519 signature (key id ${String(edId)}) verifies with none of the public keys given` };
      }
      verifiedBy.push("ed25519");
    }
    if (this.any && verifiedBy.length === 0) {
      return { verifiedBy, problem: "it carries no signature that the keys given can check" };
    }
    return { verifiedBy };
  }
}

/** Accepts `{ origin, size, head }` or a checkpoint record (`checkpoint_size`, `checkpoint_head`). */
export function normalizeExpectedCheckpoint(value: unknown): ExpectedCheckpoint {
  const v = (value ?? {}) as Record<string, unknown>;
  const size = v.size ?? v.checkpoint_size;
  const head = v.head ?? v.checkpoint_head;
  if (typeof v.origin !== "string" || v.origin === "" || typeof size !== "number" || !Number.isSafeInteger(size) || size < 1 || typeof head !== "string" || !/^[0-9a-f]{64}$/.test(head)) {
    throw new TypeError("expectCheckpoint: expected { origin, size, head } or an audit.checkpoint record (origin, checkpoint_size, checkpoint_head)");
  }
  return { origin: v.origin, size, head };
}
