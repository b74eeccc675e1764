import * as crypto from "node:crypto";

/**
 * The hash chain of the audit log, shared by the writer (`AuditLog`) and the checker
 * (`verifyAuditLog`), so both sides compute exactly the same bytes.
 *
 * Canonical form. A record is one JSON object. Its `hash` is the lowercase hex SHA-256 of the
 * UTF-8 bytes of `JSON.stringify(recordWithoutHash)`: compact JSON (no whitespace, ECMAScript
 * number and string formatting) with the keys in the order they appear in the written line,
 * nested objects included. The writer always puts `hash` last, so the hashed text is the written
 * line with its trailing `,"hash":"<64 hex>"` removed. Because `JSON.parse` keeps key order and
 * `JSON.stringify` is idempotent on its own output, a verifier recomputes the hash from the
 * parsed line (reformatting whitespace does not break it; reordering keys does).
 *
 * The first record of an origin has `seq` 1 and `prev_hash` = `GENESIS_HASH` (64 zeros); every
 * later record's `prev_hash` is the `hash` of the record before it in the same origin.
 */
export const GENESIS_HASH = "0".repeat(64);

/** `crypto.hash` (Node ≥ 20.12) is a one-shot without a Hash object: cheaper on the hot path. */
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: "hex") => string }).hash;

export function sha256Hex(text: string): string {
  if (oneShot) return oneShot("sha256", text, "hex");
  return crypto.createHash("sha256").update(text, "utf8").digest("hex");
}

/** Hash of a parsed record: its canonical JSON without the `hash` key. */
export function computeRecordHash(record: Readonly<Record<string, unknown>>): string {
  const { hash: _ignored, ...rest } = record;
  return sha256Hex(JSON.stringify(rest));
}

export const HASH_PATTERN = /^[0-9a-f]{64}$/;
