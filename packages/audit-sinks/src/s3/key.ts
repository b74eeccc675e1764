/**
 * Object key layout (a contract readers rely on):
 *
 *   <prefix>/<YYYY>/<MM>/<DD>/<origin>/<seqStart>-<seqEnd>.jsonl
 *
 * - the date is the UTC day of the first record's `timestamp`; an object never spans two days;
 * - `<origin>` is `encodeURIComponent(origin)` (so a `/` in an origin cannot add a level);
 * - `seqStart`/`seqEnd` are the first and last `seq` in the object, zero-padded to 20 digits,
 *   so within one origin the lexical order of keys is the `seq` order.
 */
export const SEQ_DIGITS = 20;

export interface ObjectKeyParts {
  origin: string;
  firstTimestamp: number;
  seqStart: number;
  seqEnd: number;
}

/** `"audit"`, `"audit/"`, `"/audit/"` → `"audit/"`; `""`/`undefined` → `""`. */
export function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? "").replace(/^\/+|\/+$/g, "");
  return trimmed === "" ? "" : `${trimmed}/`;
}

export function utcDay(timestampSeconds: number): string {
  const date = new Date(timestampSeconds * 1000);
  const yyyy = String(date.getUTCFullYear()).padStart(4, "0");
  const mm = String(date.getUTCMonth() + 1).padStart(2, "0");
  const dd = String(date.getUTCDate()).padStart(2, "0");
  return `${yyyy}/${mm}/${dd}`;
}

export function padSeq(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, "0");
}

export function auditObjectKey(prefix: string | undefined, parts: ObjectKeyParts): string {
  return (
    `${normalizePrefix(prefix)}${utcDay(parts.firstTimestamp)}/${encodeURIComponent(parts.origin)}/` +
    `${padSeq(parts.seqStart)}-${padSeq(parts.seqEnd)}.jsonl`
  );
}

export interface ParsedObjectKey {
  day: string;
  origin: string;
  seqStart: number;
  seqEnd: number;
}

const KEY_TAIL = /^(\d{4}\/\d{2}\/\d{2})\/([^/]+)\/(\d{20})-(\d{20})\.jsonl$/;

/** Parses a key written by the sink under `prefix`; `undefined` for anything else in the bucket. */
export function parseAuditObjectKey(prefix: string | undefined, key: string): ParsedObjectKey | undefined {
  const normalized = normalizePrefix(prefix);
  if (!key.startsWith(normalized)) return undefined;
  const match = KEY_TAIL.exec(key.slice(normalized.length));
  if (!match) return undefined;
  const [, day, origin, start, end] = match as unknown as [string, string, string, string, string];
  let decoded: string;
  try {
    decoded = decodeURIComponent(origin);
  } catch {
    return undefined;
  }
  return { day, origin: decoded, seqStart: Number(start), seqEnd: Number(end) };
}
