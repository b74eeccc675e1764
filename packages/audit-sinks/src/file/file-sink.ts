import { resolve as resolvePath } from "node:path";
import { systemClock } from "@openrtc/core";
import type { Clock } from "@openrtc/core";
import {
  TORN_SUFFIX,
  auditFileBase,
  auditLine,
  describeError,
  onProcessExit,
  rotatedAuditFileIndex,
  rotatedAuditFilePath,
} from "@openrtc/core/audit";
import type { AuditChainHead, AuditRecord, AuditSink } from "@openrtc/core/audit";
import { nodeFileIo } from "./file-io.ts";
import type { AuditFileHandle, AuditFileIo } from "./file-io.ts";
import { FileLockError, acquireLock, lockPath, releaseLock } from "./file-lock.ts";
import { readFirstLine, scanTail } from "./tail-scan.ts";

export interface FileSinkOptions {
  /** Active file, e.g. `/var/log/openrtc/audit.jsonl`. Rotated files sit beside it. */
  path: string;
  /** Start a new file once the active one would pass `maxBytes`, or is `maxAgeSeconds` old. */
  rotate?: { maxBytes?: number; maxAgeSeconds?: number };
  /** Always on: a batch is acknowledged only once fdatasync'd. Present to say so explicitly. */
  fsync?: true;
  /** Permission bits of created files (default 0o600, owner only). */
  mode?: number;
  /** Torn tails, permissive modes, unreadable tails. Default: `process.emitWarning`. */
  onWarning?: (warning: FileSinkWarning) => void;
  /** Unix seconds; drives age-based rotation. */
  clock?: Clock;
  /** File operations; tests inject faults through it. */
  io?: AuditFileIo;
  /** Sink name reported to the AuditLog (default `file`). */
  name?: string;
}

export type FileSinkWarningCode = "torn_tail" | "permissive_mode" | "unparsable_last_line" | "stale_lock";

export interface FileSinkWarning {
  code: FileSinkWarningCode;
  message: string;
  file: string;
}

/** A torn tail found on open: moved to `sideFile` and cut off the log. */
export interface TornTailRecovery {
  file: string;
  /** Byte offset where the torn bytes began (the file's new size). */
  offset: number;
  /** How many bytes were torn. */
  bytes: number;
  /** JSONL file the torn bytes were appended to (base64, with offset and time). */
  sideFile: string;
}

export interface FileSinkOpenInfo {
  path: string;
  /** The newest whole record of the log (the active file, else the newest rotated file). */
  lastRecord: AuditRecord | undefined;
  /** Set when the active file ended in a torn write. */
  recovered: TornTailRecovery | undefined;
}

export interface FileSinkStats {
  /** Records acknowledged durable. */
  records: number;
  /** `write` calls acknowledged. */
  batches: number;
  /** fdatasync calls on log files: fewer than `batches` when group commit coalesced them. */
  syncs: number;
  bytes: number;
  rotations: number;
}

export interface FileSink extends AuditSink {
  readonly path: string;
  /** Opens (creating or recovering the file); idempotent, and `write` calls it. */
  open(): Promise<FileSinkOpenInfo>;
  /** The last record known durable: from disk at open, then the last one written. */
  lastRecord(): Promise<AuditRecord | undefined>;
  /** Torn tails this sink has recovered from (normally at most one, at open). */
  readonly recovered: readonly TornTailRecovery[];
  stats(): FileSinkStats;
  /** Resolves once every write issued so far is acknowledged or rejected. */
  flush(): Promise<void>;
  /** Flushes, then closes the file; later writes reject. */
  close(): Promise<void>;
}

interface Pending {
  text: string;
  count: number;
  last: AuditRecord;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Paths held by open sinks in this process: two writers on one file would interleave lines. */
const openPaths = new Set<string>();

export function fileSink(options: FileSinkOptions): FileSink {
  return new DurableFileSink(validate(options));
}

/** `fileSink` + `open`: fails fast on an unusable path and returns the recovery info. */
export async function openFileSink(
  options: FileSinkOptions,
): Promise<{ sink: FileSink; info: FileSinkOpenInfo }> {
  const sink = fileSink(options);
  return { sink, info: await sink.open() };
}

interface Settings {
  path: string;
  maxBytes: number;
  maxAgeSeconds: number;
  mode: number;
  onWarning: (warning: FileSinkWarning) => void;
  clock: Clock;
  io: AuditFileIo;
  name: string;
}

function validate(options: FileSinkOptions): Settings {
  if (options === null || typeof options !== "object") {
    throw new TypeError("fileSink: pass options, e.g. fileSink({ path: \"/var/log/app/audit.jsonl\" })");
  }
  const { path, rotate = {}, mode = 0o600 } = options;
  if (typeof path !== "string" || path.trim() === "") {
    throw new TypeError("fileSink: `path` must be a non-empty file path, e.g. \"/var/log/app/audit.jsonl\"");
  }
  if ((options.fsync as unknown) !== undefined && (options.fsync as unknown) !== true) {
    throw new TypeError(
      "fileSink: `fsync` cannot be turned off: the sink acknowledges a batch only once it is on disk",
    );
  }
  const positive = (value: unknown, what: string): number => {
    if (value === undefined) return Number.POSITIVE_INFINITY;
    if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
      throw new RangeError(`fileSink: \`${what}\` must be a positive number, got ${String(value)}`);
    }
    return value;
  };
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new RangeError(`fileSink: \`mode\` must be permission bits like 0o600, got ${String(mode)}`);
  }
  return {
    path: resolvePath(path),
    maxBytes: positive(rotate.maxBytes, "rotate.maxBytes"),
    maxAgeSeconds: positive(rotate.maxAgeSeconds, "rotate.maxAgeSeconds"),
    mode,
    onWarning: options.onWarning ?? defaultWarning,
    clock: options.clock ?? systemClock,
    io: options.io ?? nodeFileIo,
    name: options.name ?? "file",
  };
}

function defaultWarning(warning: FileSinkWarning): void {
  process.emitWarning(warning.message, { code: `OPENRTC_AUDIT_${warning.code.toUpperCase()}` });
}

export class FileSinkError extends Error {
  override readonly name = "FileSinkError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

class DurableFileSink implements FileSink {
  readonly name: string;
  readonly path: string;
  readonly recovered: TornTailRecovery[] = [];
  private readonly s: Settings;
  private handle: AuditFileHandle | undefined;
  private size = 0;
  /** Bytes past `size` may hold a failed write's leftovers; cut them before writing again. */
  private dirty = false;
  private startedAt = 0;
  private nextIndex = 1;
  private last: AuditRecord | undefined;
  private opening: Promise<FileSinkOpenInfo> | undefined;
  private openInfo: FileSinkOpenInfo | undefined;
  private queue: Pending[] = [];
  private draining: Promise<void> | undefined;
  private closed = false;
  private holdsPath = false;
  private holdsLock = false;
  private readonly counters: FileSinkStats = { records: 0, batches: 0, syncs: 0, bytes: 0, rotations: 0 };

  constructor(settings: Settings) {
    this.s = settings;
    this.name = settings.name;
    this.path = settings.path;
  }

  open(): Promise<FileSinkOpenInfo> {
    if (this.closed) return Promise.reject(new FileSinkError(`audit file sink for ${this.path} is closed`));
    if (this.openInfo !== undefined && this.handle !== undefined) return Promise.resolve(this.openInfo);
    this.opening ??= this.openActive().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  async lastRecord(): Promise<AuditRecord | undefined> {
    if (this.openInfo === undefined) await this.open();
    return this.last;
  }

  stats(): FileSinkStats {
    return { ...this.counters };
  }

  write(records: readonly AuditRecord[]): Promise<void> {
    if (this.closed) {
      return Promise.reject(new FileSinkError(`audit file sink for ${this.path} is closed; records not written`));
    }
    if (records.length === 0) return Promise.resolve();
    // Serialize now: the caller may reuse or mutate its objects once `write` returns.
    let text = "";
    for (const record of records) text += `${auditLine(record)}\n`;
    const last = records[records.length - 1] as AuditRecord;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ text, count: records.length, last, resolve, reject });
      this.draining ??= this.drain().finally(() => {
        this.draining = undefined;
      });
    });
  }

  async flush(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    if (this.opening !== undefined) await this.opening.catch(() => undefined);
    const handle = this.handle;
    this.handle = undefined;
    try {
      if (handle !== undefined) await handle.close();
    } finally {
      await this.release();
    }
  }

  private async release(): Promise<void> {
    if (this.holdsLock) {
      this.holdsLock = false;
      await releaseLock(this.path).catch(() => undefined);
    }
    if (this.holdsPath) {
      openPaths.delete(this.path);
      this.holdsPath = false;
    }
  }

  /** Group commit: every batch queued while the previous write+fsync ran goes out in one. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      try {
        await this.open();
      } catch (error) {
        for (const p of this.queue.splice(0)) p.reject(error);
        continue;
      }
      const group = this.queue.splice(0);
      try {
        await this.commit(group);
      } catch (error) {
        // Batches already durable were resolved by `commit`; the rest fail, and so does every
        // batch queued behind them: writing those now would leave a gap in the file that the
        // caller's retry of the failed ones could only fill out of order.
        for (const p of group) p.reject(error);
        for (const p of this.queue.splice(0)) p.reject(error);
      }
    }
  }

  /**
   * Writes `group` as few write+fdatasync rounds as rotation allows (one without rotation),
   * resolving each batch once its bytes are durable. A batch never spans two files.
   */
  private async commit(group: Pending[]): Promise<void> {
    if (this.dirty) await this.cut(this.handle as AuditFileHandle);
    let start = 0;
    let bytes = 0;
    const settle = async (end: number): Promise<void> => {
      if (end === start) return;
      const segment = group.slice(start, end);
      await this.append(Buffer.from(segment.map((p) => p.text).join(""), "utf8"));
      for (const p of segment) {
        this.counters.records += p.count;
        this.counters.batches += 1;
        p.resolve();
      }
      this.last = (segment[segment.length - 1] as Pending).last;
      // Settled promises ignore the group-wide reject if a later segment fails.
      start = end;
      bytes = 0;
    };
    for (let i = 0; i < group.length; i += 1) {
      const size = Buffer.byteLength((group[i] as Pending).text, "utf8");
      if (this.mustRotate(this.size + bytes, size)) {
        await settle(i);
        await this.rotate();
      }
      bytes += size;
    }
    await settle(group.length);
  }

  private mustRotate(currentBytes: number, extraBytes: number): boolean {
    if (currentBytes === 0) return false;
    if (currentBytes + extraBytes > this.s.maxBytes) return true;
    return this.s.clock() - this.startedAt >= this.s.maxAgeSeconds;
  }

  /** Writes at the end of the file and makes it durable; on failure leaves `size` as it was. */
  private async append(data: Buffer): Promise<void> {
    const handle = this.handle;
    if (handle === undefined) throw new FileSinkError(`audit file ${this.path} is not open`);
    const actual = await handle.size();
    if (actual !== this.size) {
      throw new FileSinkError(
        `audit file ${this.path} is ${actual} bytes, but this sink wrote ${this.size}: something else writes or truncated it; ` +
          "records not written (one writer per file)",
      );
    }
    try {
      let written = 0;
      while (written < data.byteLength) {
        const n = await handle.write(data.subarray(written), this.size + written);
        if (n <= 0) throw new Error("write returned 0 bytes");
        written += n;
      }
      await handle.datasync();
      this.counters.syncs += 1;
    } catch (error) {
      this.dirty = true;
      await this.cut(handle).catch(() => undefined);
      throw new FileSinkError(`cannot write audit records to ${this.path}: ${describe(error)}`, { cause: error });
    }
    this.size += data.byteLength;
    this.counters.bytes += data.byteLength;
  }

  /** Removes whatever a failed write left past the last acknowledged byte. */
  private async cut(handle: AuditFileHandle): Promise<void> {
    await handle.truncate(this.size);
    await handle.datasync();
    this.dirty = false;
  }

  private async rotate(): Promise<void> {
    const handle = this.handle as AuditFileHandle;
    // rename() replaces an existing target silently: never let it overwrite a rotated file
    // that appeared since open (restored from a backup, say).
    while ((await this.s.io.modeOf(rotatedAuditFilePath(this.path, this.nextIndex))) !== undefined) this.nextIndex += 1;
    const target = rotatedAuditFilePath(this.path, this.nextIndex);
    try {
      await this.s.io.rename(this.path, target);
    } catch (error) {
      throw new FileSinkError(`cannot rotate ${this.path} to ${target}: ${describe(error)}`, { cause: error });
    }
    this.nextIndex += 1;
    this.counters.rotations += 1;
    // From here the old file is complete; whatever fails next, the next open starts afresh.
    this.handle = undefined;
    this.openInfo = undefined;
    await handle.close().catch(() => undefined);
    await this.createActive();
  }

  private async createActive(): Promise<void> {
    const { io, mode } = this.s;
    let handle: AuditFileHandle;
    try {
      handle = await io.open(this.path, { create: true, mode });
      // The umask may have removed bits the caller asked for; set exactly what was asked.
      await handle.chmod(mode);
    } catch (error) {
      throw openError(this.path, error);
    }
    await io.syncDir(auditFileBase(this.path).dir);
    this.handle = handle;
    this.size = 0;
    this.dirty = false;
    this.startedAt = this.s.clock();
    this.openInfo = { path: this.path, lastRecord: this.last, recovered: undefined };
  }

  private async openActive(): Promise<FileSinkOpenInfo> {
    if (!this.holdsPath) {
      if (openPaths.has(this.path)) {
        throw new FileSinkError(
          `another audit file sink in this process already writes ${this.path}; share one sink instead`,
        );
      }
      openPaths.add(this.path);
      this.holdsPath = true;
    }
    try {
      if (!this.holdsLock) await this.lock();
      return await this.recoverOrCreate();
    } catch (error) {
      await this.release();
      throw error;
    }
  }

  private async lock(): Promise<void> {
    let taken;
    try {
      taken = await acquireLock(this.path, this.s.mode);
    } catch (error) {
      if (error instanceof FileLockError) throw new FileSinkError(error.message, { cause: error });
      throw openError(this.path, error);
    }
    this.holdsLock = true;
    const from = taken.tookOverFrom;
    if (from !== undefined || taken.reason !== undefined) {
      const who = from === undefined ? "an unreadable owner" : `process ${from.pid} on ${from.host || "an unnamed host"}`;
      this.warn(
        "stale_lock",
        `took over ${lockPath(this.path)} from ${who} (${taken.reason ?? "stale"}); make sure no other process writes ${this.path}`,
      );
    }
  }

  private async recoverOrCreate(): Promise<FileSinkOpenInfo> {
    const { io } = this.s;
    const base = auditFileBase(this.path);
    let names: string[];
    try {
      names = await io.readdir(base.dir);
    } catch (error) {
      throw openError(this.path, error);
    }
    const rotated = names
      .map((name) => rotatedAuditFileIndex(this.path, name))
      .filter((index): index is number => index !== undefined)
      .sort((a, b) => a - b);
    this.nextIndex = (rotated[rotated.length - 1] ?? 0) + 1;

    const existingMode = await io.modeOf(this.path).catch((error: unknown) => {
      throw openError(this.path, error);
    });
    if (existingMode === undefined) {
      if (this.last === undefined) this.last = await this.lastOfRotated(rotated);
      await this.createActive();
      return this.openInfo as FileSinkOpenInfo;
    }
    if ((existingMode & 0o777 & ~this.s.mode) !== 0) {
      this.warn(
        "permissive_mode",
        `audit file ${this.path} has mode ${octal(existingMode & 0o777)}, more open than ${octal(this.s.mode)}; run chmod ${octal(this.s.mode).slice(2)} on it`,
      );
    }
    let handle: AuditFileHandle;
    try {
      handle = await io.open(this.path, { create: false, mode: this.s.mode });
    } catch (error) {
      throw openError(this.path, error);
    }
    try {
      const size = await handle.size();
      const tail = await scanTail(handle, size);
      let recovered: TornTailRecovery | undefined;
      if (tail.torn.byteLength > 0) {
        recovered = await this.moveTornTail(handle, tail.validSize, tail.torn);
      }
      this.size = tail.validSize;
      this.dirty = false;
      const lastInFile = tail.lastLine === undefined ? undefined : this.parseLast(tail.lastLine);
      this.last = lastInFile ?? (tail.lastLine === undefined ? await this.lastOfRotated(rotated) : undefined);
      this.startedAt = this.s.clock();
      if (this.size > 0) {
        const first = await readFirstLine(handle, this.size);
        const timestamp = first === undefined ? undefined : timestampOf(first);
        if (timestamp !== undefined) this.startedAt = timestamp;
      }
      this.handle = handle;
      this.openInfo = { path: this.path, lastRecord: this.last, recovered };
      return this.openInfo;
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
  }

  /** Copies the torn bytes to `<active>.torn` (durably), then cuts them off the log. */
  private async moveTornTail(handle: AuditFileHandle, offset: number, torn: Buffer): Promise<TornTailRecovery> {
    const { io, mode } = this.s;
    const sideFile = `${this.path}${TORN_SUFFIX}`;
    const entry = `${JSON.stringify({
      file: this.path,
      offset,
      bytes: torn.byteLength,
      recovered_at: this.s.clock(),
      base64: torn.toString("base64"),
    })}\n`;
    const exists = (await io.modeOf(sideFile)) !== undefined;
    const side = await io.open(sideFile, { create: !exists, mode });
    try {
      if (!exists) await side.chmod(mode);
      const data = Buffer.from(entry, "utf8");
      const at = await side.size();
      let written = 0;
      while (written < data.byteLength) written += await side.write(data.subarray(written), at + written);
      await side.datasync();
    } finally {
      await side.close();
    }
    if (!exists) await io.syncDir(auditFileBase(this.path).dir);
    await handle.truncate(offset);
    await handle.datasync();
    const recovery: TornTailRecovery = { file: this.path, offset, bytes: torn.byteLength, sideFile };
    this.recovered.push(recovery);
    this.warn(
      "torn_tail",
      `audit file ${this.path} ended in a torn write (${torn.byteLength} bytes at offset ${offset}, never acknowledged); moved them to ${sideFile}`,
    );
    return recovery;
  }

  private parseLast(line: string): AuditRecord | undefined {
    try {
      const value: unknown = JSON.parse(line);
      if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as AuditRecord;
    } catch {
      // reported below
    }
    this.warn(
      "unparsable_last_line",
      `the last line of audit file ${this.path} is not a JSON record; the chain cannot resume from it (run openrtc audit verify)`,
    );
    return undefined;
  }

  private async lastOfRotated(indexes: number[]): Promise<AuditRecord | undefined> {
    for (let i = indexes.length - 1; i >= 0; i -= 1) {
      const file = rotatedAuditFilePath(this.path, indexes[i] as number);
      const handle = await this.s.io.open(file, { create: false, mode: this.s.mode });
      try {
        const tail = await scanTail(handle, await handle.size());
        if (tail.lastLine !== undefined) return this.parseLast(tail.lastLine);
      } finally {
        await handle.close();
      }
    }
    return undefined;
  }

  private warn(code: FileSinkWarningCode, message: string): void {
    try {
      this.s.onWarning({ code, message, file: this.path });
    } catch {
      // A throwing warning handler must not break the log.
    }
  }
}

function timestampOf(line: string): number | undefined {
  try {
    const value = (JSON.parse(line) as { timestamp?: unknown }).timestamp;
    return typeof value === "number" && Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function octal(mode: number): string {
  return `0o${mode.toString(8).padStart(3, "0")}`;
}

function describe(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  const message = String(e?.message ?? error);
  // Node's fs messages already start with the code ("ENOENT: no such file...").
  return e?.code !== undefined && !message.startsWith(e.code) ? `${e.code}: ${message}` : message;
}

function openError(path: string, error: unknown): FileSinkError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const hint =
    code === "ENOENT"
      ? "create its directory first"
      : code === "EACCES" || code === "EPERM"
        ? "give this process write permission on the file and its directory"
        : code === "EROFS"
          ? "the file system is read-only; pick a writable path"
          : code === "ENOTDIR" || code === "EISDIR"
            ? "`path` must name a file inside an existing directory"
            : "check the path";
  return new FileSinkError(`cannot open audit file ${path}: ${describe(error)}; ${hint}`, { cause: error });
}
