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
 * module, so writer and reader can never disagree on the naming.
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
  /** The line without its newline. */
  line: string;
  /** False only for a last line with no trailing newline (a torn write). */
  terminated: boolean;
}

const CHUNK = 1 << 16;

/** Every line of one audit log (see `listAuditFiles`), file by file, in order. */
export async function* readAuditFiles(pathOrDir: string): AsyncGenerator<AuditFileLine> {
  for (const file of await listAuditFiles(pathOrDir)) yield* readLines(file);
}

async function* readLines(file: string): AsyncGenerator<AuditFileLine> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.allocUnsafe(CHUNK);
    let pending: Buffer[] = [];
    let lineNo = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, null);
      if (bytesRead === 0) break;
      let start = 0;
      for (;;) {
        const nl = buffer.indexOf(10, start);
        if (nl === -1 || nl >= bytesRead) break;
        const piece = buffer.subarray(start, nl);
        const line =
          pending.length === 0
            ? piece.toString("utf8")
            : Buffer.concat([...pending, piece]).toString("utf8");
        pending = [];
        lineNo += 1;
        yield { file, lineNo, line, terminated: true };
        start = nl + 1;
      }
      if (start < bytesRead) pending.push(Buffer.from(buffer.subarray(start, bytesRead)));
    }
    if (pending.length > 0) {
      yield { file, lineNo: lineNo + 1, line: Buffer.concat(pending).toString("utf8"), terminated: false };
    }
  } finally {
    await handle.close();
  }
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
