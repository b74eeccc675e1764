import { fdatasyncSync, readdirSync, writeSync } from "node:fs";
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
import { lastOfOriginSync, readFirstLine, scanTail } from "./tail-scan.ts";

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

export type FileSinkWarningCode =
  | "torn_tail"
  | "permissive_mode"
  | "unparsable_last_line"
  | "stale_lock"
  /** The active file was removed, renamed (logrotate `create`) or replaced: a fresh file continues the chain. */
  | "file_replaced"
  /** The active file was truncated under the sink (logrotate `copytruncate`): writing goes on at its new end. */
  | "file_truncated"
  /** An fdatasync failed: the batch was rewritten through a freshly opened file. */
  | "fsync_failed";

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
  /**
   * Writes (synchronously, fdatasync'd) every batch still queued or in flight, plus `records`
   * not already taken: the last flush before the process exits. Runs by itself on
   * `process.exit()` and uncaught exceptions while the sink is open.
   */
  writeSync(records: readonly AuditRecord[]): void;
  /** The last record of `origin` in the log on disk (read synchronously), for resuming a chain. */
  chainHead(origin: string): AuditChainHead | undefined;
}

/** How many recent (seq → hash) pairs per origin the sink remembers to skip repeated records. */
const RECENT_PER_ORIGIN = 4096;
const MAX_ORIGINS = 256;

interface Pending {
  text: string;
  count: number;
  last: AuditRecord;
  records: readonly AuditRecord[];
  /** Settles with the batch: what a repeat of its records waits on. */
  done: Promise<void>;
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
  /** Per origin, the recent records this sink took (queued or written): repeats are skipped. */
  private readonly taken = new Map<string, Map<number, string>>();
  /** The group being written now (the synchronous exit flush rewrites its bytes). */
  private inflight: Pending[] = [];
  /** Bumped by `writeSync`: an async write that was overtaken must not move `size` again. */
  private epoch = 0;
  private unregisterExit: (() => void) | undefined;
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
    // Idempotent on (origin, seq): a batch the AuditLog re-sends after a timeout, while the first
    // attempt is still queued or being written, must not reach the file twice.
    const fresh = this.fresh(records);
    if (fresh.length === 0) return this.settledSoFar();
    // Serialize now: the caller may reuse or mutate its objects once `write` returns.
    let text = "";
    for (const record of fresh) text += `${auditLine(record)}\n`;
    const last = fresh[fresh.length - 1] as AuditRecord;
    this.take(fresh);
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.queue.push({ text, count: fresh.length, last, records: fresh, done, resolve, reject });
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined;
    });
    return done;
  }

  private fresh(records: readonly AuditRecord[]): AuditRecord[] {
    return records.filter((r) => this.taken.get(r.origin)?.get(r.seq) !== r.hash);
  }

  private take(records: readonly AuditRecord[]): void {
    for (const r of records) {
      let seen = this.taken.get(r.origin);
      if (seen === undefined) {
        seen = new Map();
        this.taken.set(r.origin, seen);
        if (this.taken.size > MAX_ORIGINS) this.taken.delete(this.taken.keys().next().value as string);
      }
      seen.set(r.seq, r.hash);
      if (seen.size > RECENT_PER_ORIGIN) seen.delete(seen.keys().next().value as number);
    }
  }

  /** Records that failed are forgotten, so the AuditLog's retry writes them. */
  private forget(groups: readonly Pending[]): void {
    for (const p of groups) for (const r of p.records) {
      const seen = this.taken.get(r.origin);
      if (seen?.get(r.seq) === r.hash) seen.delete(r.seq);
    }
  }

  /** A repeat resolves once everything taken so far is durable (writes complete in order). */
  private settledSoFar(): Promise<void> {
    const last = this.queue[this.queue.length - 1] ?? this.inflight[this.inflight.length - 1];
    return last === undefined ? Promise.resolve() : last.done;
  }

  writeSync(records: readonly AuditRecord[]): void {
    const fresh = this.closed ? [] : this.fresh(records);
    const groups = [...this.inflight, ...this.queue];
    if (groups.length === 0 && fresh.length === 0) return;
    const handle = this.handle;
    const fd = handle?.fd;
    if (handle === undefined || fd === undefined) {
      throw new FileSinkError(`audit file ${this.path} is not open; cannot write ${fresh.length} records synchronously`);
    }
    let text = groups.map((p) => p.text).join("");
    for (const record of fresh) text += `${auditLine(record)}\n`;
    // The write in flight (if any) targets the same offsets with the same bytes: rewriting them
    // is harmless whichever lands last.
    const data = Buffer.from(text, "utf8");
    let written = 0;
    while (written < data.byteLength) written += writeSync(fd, data, written, data.byteLength - written, this.size + written);
    fdatasyncSync(fd);
    this.epoch += 1;
    this.size += data.byteLength;
    this.counters.bytes += data.byteLength;
    this.counters.syncs += 1;
    this.take(fresh);
    this.queue = [];
    this.inflight = [];
    for (const p of groups) {
      this.counters.records += p.count;
      this.counters.batches += 1;
      p.resolve();
    }
    const last = fresh[fresh.length - 1] ?? groups[groups.length - 1]?.last;
    if (last !== undefined) this.last = last;
  }

  chainHead(origin: string): AuditChainHead | undefined {
    const base = auditFileBase(this.path);
    let files: string[];
    try {
      const names = readdirSyncSafe(base.dir);
      const rotated = names
        .map((name) => rotatedAuditFileIndex(this.path, name))
        .filter((i): i is number => i !== undefined)
        .sort((a, b) => b - a)
        .map((i) => rotatedAuditFilePath(this.path, i));
      files = [this.path, ...rotated];
    } catch {
      return undefined;
    }
    for (const file of files) {
      const head = lastOfOriginSync(file, origin);
      if (head !== undefined) return head;
    }
    return undefined;
  }

  async flush(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    this.unregisterExit?.();
    this.unregisterExit = undefined;
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
        const failed = this.queue.splice(0);
        this.forget(failed);
        for (const p of failed) p.reject(error);
        continue;
      }
      const group = this.queue.splice(0);
      this.inflight = group;
      try {
        await this.commit(group);
      } catch (error) {
        // Batches already durable were resolved by `commit`; the rest fail, and so does every
        // batch queued behind them: writing those now would leave a gap in the file that the
        // caller's retry of the failed ones could only fill out of order.
        const behind = this.queue.splice(0);
        this.forget([...group, ...behind]);
        for (const p of group) p.reject(error);
        for (const p of behind) p.reject(error);
      } finally {
        this.inflight = [];
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

  /**
   * Writes at the end of the file and makes it durable; on failure leaves `size` as it was.
   * Before and after, checks the file is still the one at `path` (not removed, renamed or
   * replaced) and not truncated, so an acknowledged batch is always reachable at `path`.
   */
  private async append(data: Buffer): Promise<void> {
    await this.checkIdentity();
    const handle = this.handle;
    if (handle === undefined) throw new FileSinkError(`audit file ${this.path} is not open`);
    const actual = await handle.size();
    if (actual !== this.size) {
      throw new FileSinkError(
        `audit file ${this.path} is ${actual} bytes, but this sink wrote ${this.size}: something else writes or truncated it; ` +
          "records not written (one writer per file)",
      );
    }
    const epoch = this.epoch;
    try {
      await this.writeAt(handle, data);
    } catch (error) {
      this.dirty = true;
      await this.cut(handle).catch(() => undefined);
      throw new FileSinkError(`cannot write audit records to ${this.path}: ${describe(error)}`, { cause: error });
    }
    try {
      await handle.datasync();
    } catch (error) {
      // After a failed fsync the kernel may have dropped the dirty pages and marked them clean: a
      // second fsync could "succeed" with the data lost. Treat the bytes as lost and rewrite them
      // through a fresh descriptor; if that fails too, fail loudly.
      await this.rewriteAfterFsyncFailure(data, error);
    }
    if (epoch !== this.epoch) return; // writeSync already wrote (and counted) these bytes
    this.counters.syncs += 1;
    this.size += data.byteLength;
    this.counters.bytes += data.byteLength;
    // Removed or renamed while we wrote: put the batch in the file at `path` too before acknowledging.
    if (this.replaced()) {
      this.warn("file_replaced", `audit file ${this.path} was removed or replaced during a write; the batch is written again to a fresh ${this.path}`);
      await this.reopenFresh();
      await this.writeAt(this.handle as AuditFileHandle, data);
      await (this.handle as AuditFileHandle).datasync();
      this.size += data.byteLength;
    }
  }

  private async writeAt(handle: AuditFileHandle, data: Buffer): Promise<void> {
    let written = 0;
    while (written < data.byteLength) {
      const n = await handle.write(data.subarray(written), this.size + written);
      if (n <= 0) throw new Error("write returned 0 bytes");
      written += n;
    }
  }

  private async rewriteAfterFsyncFailure(data: Buffer, first: unknown): Promise<void> {
    const old = this.handle as AuditFileHandle;
    this.handle = undefined;
    await old.close().catch(() => undefined);
    try {
      const handle = await this.s.io.open(this.path, { create: false, mode: this.s.mode });
      this.handle = handle;
      await handle.truncate(this.size);
      await this.writeAt(handle, data);
      await handle.datasync();
    } catch (error) {
      this.dirty = true;
      // Leave no unacknowledged bytes behind (best effort; the next write cuts them otherwise).
      await this.handle?.truncate(this.size).then(() => {
        this.dirty = false;
      }, () => undefined);
      throw new FileSinkError(
        `fdatasync of ${this.path} failed (${describe(first)}) and rewriting the batch through a fresh descriptor failed too (${describe(error)}): ` +
          "the records are not durable; the audit log keeps them and retries",
        { cause: error },
      );
    }
    this.warn("fsync_failed", `fdatasync of audit file ${this.path} failed (${describe(first)}); the batch was rewritten through a fresh descriptor and synced`);
  }

  /** True when the open file is no longer what `path` names (removed, renamed, replaced). */
  private replaced(): boolean {
    const handle = this.handle;
    const id = handle?.identity?.();
    if (id === undefined || this.s.io.inodeOf === undefined) return false;
    if (id.nlink === 0) return true;
    return this.s.io.inodeOf(this.path) !== id.ino;
  }

  /** Follows logrotate and operators: a replaced file gets a fresh one, a truncated one continues at its end. */
  private async checkIdentity(): Promise<void> {
    if (this.handle === undefined) return;
    if (this.replaced()) {
      this.warn("file_replaced", `audit file ${this.path} was removed, renamed or replaced; the chain continues in a fresh file at ${this.path}`);
      await this.reopenFresh();
      return;
    }
    const id = this.handle.identity?.();
    if (id !== undefined && id.size < this.size && !this.dirty) {
      this.warn("file_truncated", `audit file ${this.path} was truncated to ${id.size} bytes (copytruncate?); writing continues at its end`);
      this.size = id.size;
    }
  }

  private async reopenFresh(): Promise<void> {
    const old = this.handle;
    this.handle = undefined;
    this.openInfo = undefined;
    await old?.close().catch(() => undefined);
    await this.recoverOrCreate();
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
      // The rename is durable only once the directory is: a crash must not undo a rotation.
      await this.s.io.syncDir(auditFileBase(this.path).dir);
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
      const info = await this.recoverOrCreate();
      this.unregisterExit ??= onProcessExit(() => this.writeSync([]));
      return info;
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

/** Error text for messages that already say what failed: no leading "Error: ". */
function describe(error: unknown): string {
  return describeError(error).replace(/^Error: /, "");
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

function readdirSyncSafe(dir: string): string[] {
  return readdirSync(dir);
}

