// The deploy page's audit trail: the newest records of one audit log and whether its hash chains
// verify, read from a file (with its rotated siblings), a directory holding one log, or
// `s3://BUCKET/PREFIX` through @openrtc/audit-sinks/s3 (an optional peer: it depends on core).
// Records are untrusted input: only a few fields are kept, as short strings, and the page
// escapes them.
import { stat } from "node:fs/promises";
import { describeIoError } from "./audit/errors.ts";
import { listAuditFiles, readAuditFiles } from "./audit/files.ts";
import { AuditVerifier, type AuditVerifyResult } from "./audit/verify.ts";
import { importAuditSinksS3 } from "./optional-peer.ts";

/** One record as the page shows it. */
export interface AuditTrailRecord {
  seq: number | null;
  /** Unix seconds, null when the record's `timestamp` is not a number. */
  timestamp: number | null;
  event: string;
  actor: string;
  target: string;
  result: string;
  version: string | null;
  reason: string;
  origin: string;
}

export type AuditTrailVerify =
  | { ok: true; records: number; origins: number }
  | { ok: false; fault: string; message: string; line: number; file: string | null; seq: number | null };

export interface AuditTrail {
  /** What was read: the path or s3:// URL as given. */
  source: string;
  /** Unix seconds of the last read attempt. */
  readAt: number;
  /** Records in the log (all of them, not only those kept). */
  records: number;
  /** The newest records, newest first. */
  latest: AuditTrailRecord[];
  /** The chains' verdict; null when the log could not be read. */
  verify: AuditTrailVerify | null;
  /** Why the log could not be read, or null. */
  error: string | null;
  /** E.g. an unterminated last line that was ignored (a write in progress). */
  note: string | null;
}

export interface AuditTrailReaderOptions {
  /** Records kept for the page. Default 50. */
  keep?: number;
  /** Unix seconds. */
  clock?: () => number;
}

export interface AuditTrailReader {
  readonly source: string;
  /** Reads the log again (a file set only when it changed) and resolves to what the page shows; never rejects. */
  read(): Promise<AuditTrail>;
}

const S3_URL = /^s3:\/\/([^/]+)(?:\/(.*))?$/;
const FIELD_MAX = 300;
const MAX_DATE_SECONDS = 8.64e12;

/** Whether `location` names an S3 log, and if so whether it is well formed (for usage errors up front). */
export function checkAuditLocation(location: string): string | null {
  if (location.trim() === "") return "the audit log location is empty";
  if (location.startsWith("s3://") && !S3_URL.test(location)) return `${JSON.stringify(location)} is not an S3 location: expected s3://BUCKET[/PREFIX]`;
  return null;
}

export function auditTrailReader(location: string, options: AuditTrailReaderOptions = {}): AuditTrailReader {
  const problem = checkAuditLocation(location);
  if (problem !== null) throw new TypeError(`auditTrailReader: ${problem}`);
  const keep = Math.max(1, Math.floor(options.keep ?? 50));
  const clock = options.clock ?? (() => Date.now() / 1000);
  const s3 = location.startsWith("s3://");
  // The file set's names, sizes and mtimes at the last full read: unchanged means nothing new.
  let signature: string | undefined;
  let last: AuditTrail | undefined;
  return {
    source: location,
    async read() {
      const readAt = clock();
      try {
        if (!s3) {
          const files = await listAuditFiles(location);
          const now = (await Promise.all(files.map(async (f) => {
            const info = await stat(f);
            return `${f}\0${info.size}\0${info.mtimeMs}`;
          }))).join("\n");
          if (now === signature && last !== undefined) return (last = { ...last, readAt });
          const trail = await readFiles(location, files, keep, readAt);
          signature = now;
          return (last = trail);
        }
        return (last = await readS3(location, keep, readAt));
      } catch (error) {
        signature = undefined;
        return (last = { source: location, readAt, records: 0, latest: [], verify: null, error: `cannot read ${location}: ${describeIoError(error)}`, note: null });
      }
    },
  };
}

/** Keeps the newest `keep` records while the whole log streams through the verifier. */
class Collector {
  readonly verifier = new AuditVerifier();
  private readonly ring: AuditTrailRecord[] = [];
  records = 0;

  constructor(private readonly keep: number) {}

  push(line: string | Uint8Array, text: string, position: { file: string; line: number }): void {
    // The verifier stops at the first fault; the records after it are still shown (marked by the verdict).
    this.verifier.push(line, position);
    const record = pickRecord(text);
    if (record === null) return;
    this.records++;
    this.ring.push(record);
    if (this.ring.length > this.keep * 2) this.ring.splice(0, this.ring.length - this.keep);
  }

  finish(source: string, readAt: number, note: string | null): AuditTrail {
    return { source, readAt, records: this.records, latest: this.ring.slice(-this.keep).reverse(), verify: verdict(this.verifier.finish()), error: null, note };
  }
}

async function readFiles(location: string, files: readonly string[], keep: number, readAt: number): Promise<AuditTrail> {
  const c = new Collector(keep);
  const active = files[files.length - 1];
  let note: string | null = null;
  for await (const { file, lineNo, line, bytes, terminated } of readAuditFiles(location)) {
    if (!terminated && file === active && pickRecord(line) === null) {
      // A writer mid-append leaves a partial last line: not a record yet (as `audit verify` treats it).
      note = `ignored the unterminated last line ${lineNo} of ${file} (a write in progress)`;
      break;
    }
    c.push(bytes, line, { file, line: lineNo });
  }
  return c.finish(location, readAt, note);
}

interface S3Lines {
  s3AuditLineEntries(options: { bucket: string; prefix?: string }): AsyncIterable<{ key: string; lineNo: number; line: string }>;
}

let s3Module: Promise<S3Lines> | undefined;

async function readS3(url: string, keep: number, readAt: number): Promise<AuditTrail> {
  s3Module ??= importAuditSinksS3<S3Lines>();
  let s3: S3Lines;
  try {
    s3 = await s3Module;
  } catch (error) {
    throw new Error(
      `reading an audit log in S3 needs @openrtc/audit-sinks and @aws-sdk/client-s3 installed beside @openrtc/core (npm install @openrtc/audit-sinks @aws-sdk/client-s3): ${(error as Error).message}`,
    );
  }
  const m = S3_URL.exec(url) as RegExpExecArray;
  const c = new Collector(keep);
  for await (const entry of s3.s3AuditLineEntries({ bucket: m[1] as string, prefix: (m[2] ?? "").replace(/^\/+|\/+$/g, "") })) {
    c.push(entry.line, entry.line, { file: entry.key, line: entry.lineNo });
  }
  const trail = c.finish(url, readAt, null);
  if (trail.records === 0) trail.note = `no audit records under ${url}; check the bucket and prefix`;
  return trail;
}

function verdict(result: AuditVerifyResult): AuditTrailVerify {
  if (result.ok) return { ok: true, records: result.records, origins: result.origins };
  return { ok: false, fault: result.fault, message: result.message, line: result.line, file: result.file ?? null, seq: result.seq };
}

function field(value: unknown): string {
  if (value === undefined || value === null) return "";
  const text = typeof value === "string" ? value : typeof value === "number" || typeof value === "boolean" ? String(value) : JSON.stringify(value);
  return text.length > FIELD_MAX ? `${text.slice(0, FIELD_MAX)}…` : text;
}

/** The shown fields of one line, or null when it is not a JSON object. */
function pickRecord(line: string): AuditTrailRecord | null {
  let r: unknown;
  try {
    r = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof r !== "object" || r === null || Array.isArray(r)) return null;
  const o = r as Record<string, unknown>;
  return {
    seq: typeof o.seq === "number" ? o.seq : null,
    // Beyond ±8.64e12 s a Date cannot hold it (toISOString would throw): shown as unknown.
    timestamp: typeof o.timestamp === "number" && Math.abs(o.timestamp) <= MAX_DATE_SECONDS ? o.timestamp : null,
    event: field(o.event),
    actor: field(o.actor),
    target: field(o.target),
    result: field(o.result),
    version: o.version === null || o.version === undefined ? null : field(o.version),
    reason: field(o.reason),
    origin: field(o.origin),
  };
}
