import { mkdir, open, readdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import type { AuditChainHead } from "@openrtc/core/audit";
import { acquireLock as acquireOwnerLock, FileLockError, releaseLock } from "../file/file-lock.ts";
import { lastOfOriginSync } from "../file/tail-scan.ts";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { S3SinkError, S3SpoolFullError } from "./errors.ts";
import { utcDay } from "./key.ts";

/**
 * The S3 sink's local durable spool: append-only JSONL segment files in one directory.
 *
 * - `seg-<id>.jsonl`: records exactly as uploaded (one `JSON.stringify(record)` a line); a write
 *   is acknowledged only after `fdatasync`.
 * - `cursor.json`: where uploading stands (`segment`, `offset`) and the byte range of the object
 *   being uploaded (`end`). It is written (atomically) BEFORE each PutObject, so after a crash
 *   the same range is uploaded again under the same key: an object is never re-cut with other
 *   boundaries, and S3 never holds two objects covering the same records.
 * - `spool.lock`: who uses the directory (pid, host, boot id, process start time; one sink per directory).
 * - `quarantine.jsonl`: spool lines that no longer parse (disk damage), kept for a human.
 */
const SEGMENT_FILE = /^seg-(\d{12})\.jsonl$/;
const NEWLINE = 0x0a;

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  /** A segment is sealed (and deleted once uploaded) when it reaches this size. */
  segmentBytes: number;
  /** Unix seconds, for the age of the oldest spooled record. */
  clock: () => number;
}

/** One run of spooled records to upload as one object: same origin, same UTC day. */
export interface SpoolBatch {
  segment: number;
  start: number;
  end: number;
  /** The exact spool bytes: the object's content. */
  body: Buffer;
  records: number;
  origin: string;
  firstTimestamp: number;
  seqStart: number;
  seqEnd: number;
}

export interface BatchLimits {
  maxRecords: number;
  maxBytes: number;
}

interface Segment {
  id: number;
  path: string;
  /** Bytes durably written (a write in progress is not counted until it is synced). */
  size: number;
  sealed: boolean;
}

/** Records appended by one write (or found at startup), for the backlog's age and batching delay. */
interface Chunk {
  segment: number;
  end: number;
  /** Unix seconds (clock) when spooled; for a spool inherited from a crash, the first record's timestamp. */
  spooledAt: number;
  /** performance.now() when spooled; inherited chunks are due at once. */
  spooledAtMs: number;
}

interface PendingAppend {
  bytes: Buffer;
  records: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface Cursor {
  segment: number;
  offset: number;
  end?: number;
}

export class Spool {
  readonly dir: string;
  private readonly options: SpoolOptions;
  private readonly segments: Segment[] = [];
  private nextSegmentId: number;
  private writer: { segment: Segment; handle: FileHandle } | undefined;
  /** Upload position inside segments[0]. */
  private headOffset = 0;
  /** End of the range announced in cursor.json and not yet confirmed uploaded. */
  private intentEnd: number | undefined;
  private readonly chunks: Chunk[] = [];
  private readonly queue: PendingAppend[] = [];
  private queuedBytes = 0;
  private queuedRecords = 0;
  private appending = false;
  private closed = false;
  private pendingBytesValue = 0;
  private pendingRecordsValue = 0;
  /** Records that left the spool (uploaded or quarantined) since this process opened it. */
  private consumedRecordsValue = 0;
  private quarantinedValue = 0;
  /** Called after every change of the backlog. */
  onChange: () => void = () => {};

  private constructor(options: SpoolOptions, nextSegmentId: number) {
    this.dir = options.dir;
    this.options = options;
    this.nextSegmentId = nextSegmentId;
  }

  /** Opens (creating if needed) and locks a spool directory, and takes over what a previous process left. */
  static async open(options: SpoolOptions): Promise<Spool> {
    await mkdir(options.dir, { recursive: true });
    await acquireLock(options.dir);
    try {
      return await Spool.recover(options);
    } catch (error) {
      await releaseLock(join(options.dir, SPOOL_LOCK_BASE));
      throw error;
    }
  }

  private static async recover(options: SpoolOptions): Promise<Spool> {
    const ids = (await readdir(options.dir))
      .map((name) => SEGMENT_FILE.exec(name)?.[1])
      .filter((id): id is string => id !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const cursor = await readCursor(options.dir);
    // Never reuse a segment id at or below the cursor's: recovery would take it for uploaded.
    const spool = new Spool(options, Math.max(ids.at(-1) ?? 0, cursor?.segment ?? 0) + 1);
    for (const id of ids) {
      const path = segmentPath(options.dir, id);
      // Segments before the cursor's were uploaded completely; deleting them may have been cut short.
      if (cursor && id < cursor.segment) {
        await unlink(path);
        continue;
      }
      const content = await readFile(path);
      // A write torn by a crash was never acknowledged: drop the partial last line.
      const whole = content.lastIndexOf(NEWLINE) + 1;
      if (whole < content.length) await truncateFile(path, whole);
      const segment: Segment = { id, path, size: whole, sealed: true };
      const start = cursor && id === cursor.segment && cursor.offset <= whole ? cursor.offset : 0;
      if (spool.segments.length === 0) {
        spool.headOffset = start;
        if (cursor?.end !== undefined && id === cursor.segment && cursor.end <= whole && cursor.end > start) {
          spool.intentEnd = cursor.end;
        }
      }
      spool.segments.push(segment);
      const records = countLines(content, start, whole);
      if (records > 0) {
        spool.pendingRecordsValue += records;
        spool.pendingBytesValue += whole - start;
        spool.chunks.push({
          segment: id,
          end: whole,
          spooledAt: firstTimestamp(content, start) ?? options.clock(),
          spooledAtMs: Number.NEGATIVE_INFINITY,
        });
      }
    }
    return spool;
  }

  get pendingRecords(): number {
    return this.pendingRecordsValue;
  }

  get pendingBytes(): number {
    return this.pendingBytesValue;
  }

  /** Records accepted by `append` but not yet durable. */
  get queuedRecordCount(): number {
    return this.queuedRecords;
  }

  get consumedRecords(): number {
    return this.consumedRecordsValue;
  }

  get quarantinedLines(): number {
    return this.quarantinedValue;
  }

  /**
   * The last record of `origin` still in the spool's segment files (durable bytes only; read
   * synchronously, newest segment first), whether or not it was uploaded yet. Lines not yet
   * uploaded are newer than anything this spool put in S3.
   */
  lastRecordOf(origin: string): AuditChainHead | undefined {
    for (let index = this.segments.length - 1; index >= 0; index -= 1) {
      const segment = this.segments[index]!;
      const head = lastOfOriginSync(segment.path, origin, segment.size);
      if (head !== undefined) return head;
    }
    return undefined;
  }

  /** Whether an upload range was already announced (it must be uploaded as is, without waiting). */
  get hasAnnouncedBatch(): boolean {
    return this.intentEnd !== undefined;
  }

  /** Age in seconds of the oldest record not yet uploaded (0 when empty). */
  oldestAgeSeconds(): number {
    const oldest = this.chunks[0];
    return oldest === undefined ? 0 : Math.max(0, this.options.clock() - oldest.spooledAt);
  }

  /** performance.now() at which the oldest pending record was spooled (undefined when empty). */
  oldestSpooledAtMs(): number | undefined {
    return this.chunks[0]?.spooledAtMs;
  }

  /**
   * Appends JSONL bytes holding `records` records; resolves once they are on disk (fdatasync).
   * Concurrent appends are written and synced together. Rejects, storing nothing, when the spool
   * would pass `maxBytes` or the disk write fails.
   */
  append(bytes: Buffer, records: number): Promise<void> {
    if (this.closed) return Promise.reject(new S3SinkError(`S3 audit sink spool ${this.dir} is closed`));
    if (this.pendingBytesValue + this.queuedBytes + bytes.length > this.options.maxBytes) {
      return Promise.reject(
        new S3SpoolFullError(
          this.dir,
          bytes.length,
          { spooledRecords: this.pendingRecordsValue, spooledBytes: this.pendingBytesValue, lastError: null },
          this.options.maxBytes,
        ),
      );
    }
    this.queuedBytes += bytes.length;
    this.queuedRecords += records;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ bytes, records, resolve, reject });
      if (!this.appending) void this.drainAppends();
    });
  }

  private async drainAppends(): Promise<void> {
    this.appending = true;
    while (this.queue.length > 0) {
      const group = this.queue.splice(0);
      const bytes = Buffer.concat(group.map((item) => item.bytes));
      const records = group.reduce((sum, item) => sum + item.records, 0);
      try {
        const segment = await this.writeDurably(bytes);
        this.pendingBytesValue += bytes.length;
        this.pendingRecordsValue += records;
        this.chunks.push({
          segment: segment.id,
          end: segment.size,
          spooledAt: this.options.clock(),
          spooledAtMs: performance.now(),
        });
        for (const item of group) item.resolve();
      } catch (error) {
        const wrapped = new S3SinkError(
          `S3 audit sink could not write to its spool ${this.dir}: ${(error as Error).message}`,
          { cause: error },
        );
        for (const item of group) item.reject(wrapped);
      } finally {
        this.queuedBytes -= bytes.length;
        this.queuedRecords -= records;
      }
      this.onChange();
    }
    this.appending = false;
  }

  private async writeDurably(bytes: Buffer): Promise<Segment> {
    const { segment, handle } = await this.writableSegment();
    const before = segment.size;
    try {
      let written = 0;
      while (written < bytes.length) {
        const result = await handle.write(bytes, written, bytes.length - written);
        written += result.bytesWritten;
      }
      await handle.datasync();
    } catch (error) {
      // Never leave half a batch behind: the caller retries the whole batch.
      await handle.truncate(before).catch(() => {});
      throw error;
    }
    segment.size += bytes.length;
    return segment;
  }

  private async writableSegment(): Promise<{ segment: Segment; handle: FileHandle }> {
    if (this.writer && this.writer.segment.size >= this.options.segmentBytes) {
      const old = this.writer;
      this.writer = undefined;
      old.segment.sealed = true;
      await old.handle.close();
    }
    if (!this.writer) {
      const id = this.nextSegmentId++;
      const path = segmentPath(this.dir, id);
      const handle = await open(path, "a");
      // The new file's directory entry must survive a crash too.
      await syncDir(this.dir);
      const segment: Segment = { id, path, size: 0, sealed: false };
      this.segments.push(segment);
      if (this.segments.length === 1) this.headOffset = 0;
      this.writer = { segment, handle };
    }
    return this.writer;
  }

  /**
   * The next run of records to upload, read back from disk: from the upload position, one origin
   * and one UTC day, at most `limits` (but at least one record). After a crash, exactly the range
   * announced before it. `undefined` when nothing is pending.
   */
  async nextBatch(limits: BatchLimits): Promise<SpoolBatch | undefined> {
    for (;;) {
      const head = this.segments[0];
      if (head === undefined) return undefined;
      if (this.headOffset >= head.size) {
        if (!head.sealed) return undefined;
        await this.dropHead();
        continue;
      }
      const batch = await this.readBatch(head, limits);
      if (batch !== undefined) return batch;
    }
  }

  private async readBatch(head: Segment, limits: BatchLimits): Promise<SpoolBatch | undefined> {
    const start = this.headOffset;
    const announced = this.intentEnd;
    let length = announced !== undefined ? announced - start : Math.min(head.size - start, Math.max(limits.maxBytes, 65_536));
    let window = await readRange(head.path, start, length);
    // A single record longer than the window still makes an object of its own.
    while (window.indexOf(NEWLINE) === -1 && start + length < head.size) {
      length = Math.min(head.size - start, length * 2);
      window = await readRange(head.path, start, length);
    }
    let position = 0;
    let records = 0;
    let first: { origin: string; day: string; timestamp: number; seq: number } | undefined;
    let lastSeq = 0;
    while (position < window.length) {
      const newline = window.indexOf(NEWLINE, position);
      if (newline === -1) break;
      const lineEnd = newline + 1;
      if (announced === undefined && records > 0 && (records >= limits.maxRecords || lineEnd > limits.maxBytes)) break;
      const parsed = parseLine(window.subarray(position, newline));
      if (parsed === undefined) {
        if (records > 0) break;
        await this.quarantine(head, start + lineEnd, window.subarray(position, lineEnd));
        return undefined;
      }
      if (first === undefined) {
        first = { origin: parsed.origin, day: utcDay(parsed.timestamp), timestamp: parsed.timestamp, seq: parsed.seq };
      } else if (announced === undefined && (parsed.origin !== first.origin || utcDay(parsed.timestamp) !== first.day)) {
        break;
      }
      lastSeq = parsed.seq;
      records += 1;
      position = lineEnd;
    }
    if (first === undefined) {
      if (position === 0 && window.length > 0) {
        // Lines are only ever appended whole; a line without its newline here means damage.
        throw new S3SinkError(`spool segment ${head.path} has an unterminated line at byte ${start}`);
      }
      return undefined;
    }
    return {
      segment: head.id,
      start,
      end: start + position,
      body: window.subarray(0, position),
      records,
      origin: first.origin,
      firstTimestamp: first.timestamp,
      seqStart: first.seq,
      seqEnd: lastSeq,
    };
  }

  /** Records the batch's range in cursor.json before it is uploaded (see the module comment). */
  async announce(batch: SpoolBatch): Promise<void> {
    if (this.intentEnd === batch.end) return;
    await writeCursor(this.dir, { segment: batch.segment, offset: batch.start, end: batch.end });
    this.intentEnd = batch.end;
  }

  /** The batch is in S3: move past it. */
  async complete(batch: SpoolBatch): Promise<void> {
    this.intentEnd = undefined;
    this.headOffset = batch.end;
    this.consume(batch.segment, batch.end, batch.records);
    const head = this.segments[0];
    if (head && head.sealed && this.headOffset >= head.size) await this.dropHead();
    this.onChange();
  }

  private consume(segment: number, end: number, records: number): void {
    this.pendingRecordsValue -= records;
    this.consumedRecordsValue += records;
    this.pendingBytesValue = this.countPendingBytes();
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      if (chunk.segment < segment || (chunk.segment === segment && chunk.end <= end)) this.chunks.shift();
      else break;
    }
  }

  private countPendingBytes(): number {
    let bytes = 0;
    for (const [index, segment] of this.segments.entries()) bytes += segment.size - (index === 0 ? this.headOffset : 0);
    return bytes;
  }

  private async dropHead(): Promise<void> {
    const head = this.segments.shift();
    if (head === undefined) return;
    const next = this.segments[0];
    this.headOffset = 0;
    // Point the cursor past the segment first, so a crash between the two steps re-uploads nothing.
    await writeCursor(this.dir, { segment: next?.id ?? head.id + 1, offset: 0 });
    await unlink(head.path).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "ENOENT") throw error;
    });
  }

  private async quarantine(head: Segment, to: number, line: Buffer): Promise<void> {
    const handle = await open(join(this.dir, "quarantine.jsonl"), "a");
    try {
      await handle.write(line[line.length - 1] === NEWLINE ? line : Buffer.concat([line, Buffer.from("\n")]));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await writeCursor(this.dir, { segment: head.id, offset: to });
    this.intentEnd = undefined;
    this.headOffset = to;
    this.quarantinedValue += 1;
    this.consume(head.id, to, 1);
    this.onChange();
  }

  /** Closes files and releases the directory; what is spooled stays for the next sink. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.appending) await new Promise((resolve) => setTimeout(resolve, 1));
    if (this.writer) {
      await this.writer.handle.close();
      this.writer.segment.sealed = true;
      this.writer = undefined;
    }
    const head = this.segments[0];
    if (head && this.headOffset >= head.size && this.segments.length === 1) await this.dropHead();
    await releaseLock(join(this.dir, SPOOL_LOCK_BASE));
  }
}

interface ParsedLine {
  origin: string;
  timestamp: number;
  seq: number;
}

function parseLine(line: Buffer): ParsedLine | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line.toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { origin, timestamp, seq } = value as Record<string, unknown>;
  if (typeof origin !== "string" || typeof timestamp !== "number" || !Number.isFinite(timestamp)) return undefined;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  return { origin, timestamp, seq };
}

function firstTimestamp(content: Buffer, start: number): number | undefined {
  const newline = content.indexOf(NEWLINE, start);
  return newline === -1 ? undefined : parseLine(content.subarray(start, newline))?.timestamp;
}

function countLines(content: Buffer, start: number, end: number): number {
  let count = 0;
  for (let index = content.indexOf(NEWLINE, start); index !== -1 && index < end; index = content.indexOf(NEWLINE, index + 1)) {
    count += 1;
  }
  return count;
}

function segmentPath(dir: string, id: number): string {
  return join(dir, `seg-${String(id).padStart(12, "0")}.jsonl`);
}

async function readRange(path: string, start: number, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await handle.read(buffer, filled, length - filled, start + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

async function truncateFile(path: string, length: number): Promise<void> {
  const handle = await open(path, "r+");
  try {
    await handle.truncate(length);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readCursor(dir: string): Promise<Cursor | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, "cursor.json"), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const value = JSON.parse(text) as Partial<Cursor>;
  const valid =
    Number.isSafeInteger(value.segment) &&
    Number.isSafeInteger(value.offset) &&
    (value.end === undefined || Number.isSafeInteger(value.end));
  if (!valid) {
    throw new S3SinkError(
      `S3 audit sink spool ${dir} has an unreadable cursor.json (${text.slice(0, 100)}); ` +
        `move it away to re-upload the whole spool (S3 may then hold some records twice).`,
    );
  }
  return value as Cursor;
}

async function writeCursor(dir: string, cursor: Cursor): Promise<void> {
  const path = join(dir, "cursor.json");
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, "w");
  try {
    await handle.writeFile(JSON.stringify(cursor));
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  await syncDir(dir);
}

/**
 * One sink per spool directory, with the file sink's lock (`spool.lock`): it tells a live owner
 * from a dead one even when a restarted container's process got the very same pid.
 */
const SPOOL_LOCK_BASE = "spool";

async function acquireLock(dir: string): Promise<void> {
  try {
    await acquireOwnerLock(join(dir, SPOOL_LOCK_BASE), 0o600);
  } catch (error) {
    if (!(error instanceof FileLockError) || error.owner === undefined) throw error;
    const owner = error.owner.pid;
    throw new S3SinkError(
      `S3 audit sink spool ${dir} is in use by process ${owner}${owner === process.pid ? " (this process)" : ""}: ` +
        `give each s3Sink its own spoolDir, or close() the other sink first.`,
    );
  }
}

