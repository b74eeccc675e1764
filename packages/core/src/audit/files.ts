import { open, readdir, stat } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";

/**
 * Naming of a rotated audit-log set. The active file keeps the configured name
 * (`audit.jsonl`); each rotation renames it to `<stem>.<index><ext>` with the index
 * zero-padded to 8 digits (`audit.00000001.jsonl`, `audit.00000002.jsonl`, ...). Rotated
 * files sort before the active one (a digit sorts before any letter) and by index among
 * themselves, so the order of the set is: rotated files by index, then the active file.
 * Readers sort numerically, so an index past 8 digits still orders correctly.
 *
 * Both the file sink (`@openrtc/audit-sinks/file`) and `openrtc audit verify` use this
 * module, so writer and reader can never disagree on the naming. Readers hand lines on as bytes
 * too: the verifier checks the bytes, not a decoded and re-encoded copy of them.
 */
export const ROTATED_INDEX_DIGITS = 8;

/** A torn tail moved aside on recovery lands in `<active>.torn`; readers skip it. */
export const TORN_SUFFIX = ".torn";

export interface AuditFileBase {
  /** Directory holding the set. */
  dir: string;
  /** File name without extension, e.g. `audit`. */
  stem: string;
  /** Extension with its dot, e.g. `.jsonl`; may be empty. */
  ext: string;
  /** Full path of the active file. */
  active: string;
}

export function auditFileBase(path: string): AuditFileBase {
  const dir = dirname(path);
  const name = basename(path);
  const ext = extname(name);
  return { dir, stem: name.slice(0, name.length - ext.length), ext, active: path };
}

/** Path of the rotated file with the given index (1-based). */
export function rotatedAuditFilePath(path: string, index: number): string {
  if (!Number.isSafeInteger(index) || index < 1) {
    throw new RangeError(`rotation index must be a positive integer, got ${String(index)}`);
  }
  const { dir, stem, ext } = auditFileBase(path);
  return join(dir, `${stem}.${String(index).padStart(ROTATED_INDEX_DIGITS, "0")}${ext}`);
}

/** The rotation index of `fileName` if it is a rotated file of the set based at `path`. */
export function rotatedAuditFileIndex(path: string, fileName: string): number | undefined {
  const { stem, ext } = auditFileBase(path);
  const prefix = `${stem}.`;
  if (!fileName.startsWith(prefix) || !fileName.endsWith(ext)) return undefined;
  const digits = fileName.slice(prefix.length, fileName.length - ext.length);
  if (digits.length < ROTATED_INDEX_DIGITS || !/^\d+$/.test(digits)) return undefined;
  const index = Number(digits);
  return Number.isSafeInteger(index) && index >= 1 ? index : undefined;
}

/** Rotated files of the set based at `path`, oldest first, with their indexes. */
export async function listRotatedAuditFiles(
  path: string,
): Promise<Array<{ file: string; index: number }>> {
  const { dir } = auditFileBase(path);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const rotated: Array<{ file: string; index: number }> = [];
  for (const name of names) {
    const index = rotatedAuditFileIndex(path, name);
    if (index !== undefined) rotated.push({ file: join(dir, name), index });
  }
  return rotated.sort((a, b) => a.index - b.index);
}

const ROTATED_JSONL = new RegExp(`^(.+)\\.\\d{${ROTATED_INDEX_DIGITS},}\\.jsonl$`);

/**
 * The files of one audit log, in chronological order. `pathOrDir` is either the active
 * file's path (its rotated siblings are included even if the active file itself is gone) or
 * a directory holding exactly one `*.jsonl` set.
 */
export async function listAuditFiles(pathOrDir: string): Promise<string[]> {
  const info = await stat(pathOrDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  let base = pathOrDir;
  if (info?.isDirectory()) {
    const bases = new Set<string>();
    for (const name of await readdir(pathOrDir)) {
      if (!name.endsWith(".jsonl")) continue;
      bases.add(name.replace(ROTATED_JSONL, "$1.jsonl"));
    }
    if (bases.size === 0) {
      throw new Error(`no audit log in ${pathOrDir}: expected *.jsonl files`);
    }
    if (bases.size > 1) {
      throw new Error(
        `${pathOrDir} holds several audit logs (${[...bases].sort().join(", ")}); pass one of their paths`,
      );
    }
    base = join(pathOrDir, [...bases][0] as string);
  }
  const files = (await listRotatedAuditFiles(base)).map((r) => r.file);
  const active = base === pathOrDir && info !== undefined ? true : await exists(base);
  if (active) files.push(base);
  if (files.length === 0) {
    const { stem, ext } = auditFileBase(base);
    throw new Error(
      `no audit log at ${base} (nor rotated files ${stem}.${"N".repeat(ROTATED_INDEX_DIGITS)}${ext})`,
    );
  }
  return files;
}

export interface AuditFileLine {
  /** Path of the file the line comes from. */
  file: string;
  /** 1-based line number within that file. */
  lineNo: number;
  /** The line without its newline, decoded as UTF-8 (invalid bytes become U+FFFD: check `bytes`). */
  line: string;
  /** The line's bytes, as on disk (at most `maxLineBytes + 1` of them for an oversize line). */
  bytes: Buffer;
  /** False only for a last line with no trailing newline (a torn write). */
  terminated: boolean;
}

export interface ReadAuditFilesOptions {
  /** Bytes kept of one line; a longer line is cut to `maxLineBytes + 1` bytes (so a checker sees it is too long) and memory stays bounded. Default 1 MiB. */
  maxLineBytes?: number;
}

const CHUNK = 1 << 16;

/** Every line of one audit log (see `listAuditFiles`), file by file, in order. */
export async function* readAuditFiles(pathOrDir: string, options: ReadAuditFilesOptions = {}): AsyncGenerator<AuditFileLine> {
  for (const file of await listAuditFiles(pathOrDir)) yield* readAuditFileLines(file, options);
}

/** Every line of one file, as bytes and text, with bounded memory per line. */
export async function* readAuditFileLines(file: string, options: ReadAuditFilesOptions = {}): AsyncGenerator<AuditFileLine> {
  const handle = await open(file, "r");
  try {
    for await (const line of splitLines(readChunks(handle), options.maxLineBytes)) {
      yield { file, lineNo: line.lineNo, line: line.bytes.toString("utf8"), bytes: line.bytes, terminated: line.terminated };
    }
  } finally {
    await handle.close();
  }
}

async function* readChunks(handle: import("node:fs/promises").FileHandle): AsyncGenerator<Buffer> {
  for (;;) {
    const buffer = Buffer.allocUnsafe(CHUNK);
    const { bytesRead } = await handle.read(buffer, 0, CHUNK, null);
    if (bytesRead === 0) return;
    yield buffer.subarray(0, bytesRead);
  }
}

/**
 * Splits a byte stream on `\n` into lines of bytes (standard input, files, objects). A line
 * longer than `maxLineBytes` keeps only its first `maxLineBytes + 1` bytes: the rest is skipped,
 * so a hostile input cannot make the reader hold an unbounded line.
 */
export async function* splitLines(
  chunks: AsyncIterable<Uint8Array | string>,
  maxLineBytes = 1 << 20,
): AsyncGenerator<{ lineNo: number; bytes: Buffer; terminated: boolean }> {
  const cap = maxLineBytes + 1;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineNo = 0;
  const keep = (piece: Buffer): void => {
    if (pendingBytes >= cap) return;
    const part = piece.byteLength > cap - pendingBytes ? piece.subarray(0, cap - pendingBytes) : piece;
    pending.push(Buffer.from(part));
    pendingBytes += part.byteLength;
  };
  for await (const raw of chunks) {
    const chunk = typeof raw === "string" ? Buffer.from(raw, "utf8") : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      let bytes: Buffer;
      if (pending.length === 0) {
        bytes = piece.byteLength > cap ? Buffer.from(piece.subarray(0, cap)) : Buffer.from(piece);
      } else {
        keep(piece);
        bytes = Buffer.concat(pending);
      }
      pending = [];
      pendingBytes = 0;
      lineNo += 1;
      yield { lineNo, bytes, terminated: true };
      start = nl + 1;
    }
    if (start < chunk.byteLength) keep(chunk.subarray(start));
  }
  if (pending.length > 0) yield { lineNo: lineNo + 1, bytes: Buffer.concat(pending), terminated: false };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
