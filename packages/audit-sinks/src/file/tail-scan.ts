import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { AuditChainHead, AuditRecord } from "@openrtc/core/audit";
import type { AuditFileHandle } from "./file-io.ts";

export interface TailScan {
  /** Bytes up to and including the last newline: the part of the file made of whole lines. */
  validSize: number;
  /** The last whole line (without newline), if any. */
  lastLine: string | undefined;
  /** Bytes after the last newline: a write torn by a crash. Empty if the file ends in "\n". */
  torn: Buffer;
}

const CHUNK = 1 << 16;
const NEWLINE = 10;

/** Finds the end of the last whole line of a file of `size` bytes by reading backwards. */
export async function scanTail(handle: AuditFileHandle, size: number): Promise<TailScan> {
  const tornParts: Buffer[] = [];
  let end = size;
  let lastNewline = -1;
  // Walk back to the last newline; everything after it is torn.
  while (end > 0 && lastNewline === -1) {
    const start = Math.max(0, end - CHUNK);
    const chunk = await readAt(handle, start, end - start);
    const at = chunk.lastIndexOf(NEWLINE);
    if (at === -1) {
      tornParts.unshift(chunk);
    } else {
      lastNewline = start + at;
      tornParts.unshift(chunk.subarray(at + 1));
    }
    end = start;
  }
  const torn = Buffer.concat(tornParts);
  if (lastNewline === -1) return { validSize: 0, lastLine: undefined, torn };
  // Walk back from that newline to the one before it to collect the last whole line.
  const lineParts: Buffer[] = [];
  end = lastNewline;
  for (;;) {
    if (end === 0) break;
    const start = Math.max(0, end - CHUNK);
    const chunk = await readAt(handle, start, end - start);
    const at = chunk.lastIndexOf(NEWLINE);
    lineParts.unshift(at === -1 ? chunk : chunk.subarray(at + 1));
    if (at !== -1) break;
    end = start;
  }
  return {
    validSize: lastNewline + 1,
    lastLine: Buffer.concat(lineParts).toString("utf8"),
    torn,
  };
}

/** The first whole line of a file, if it has one within `limit` bytes. */
export async function readFirstLine(
  handle: AuditFileHandle,
  size: number,
  limit = 1 << 20,
): Promise<string | undefined> {
  const parts: Buffer[] = [];
  let position = 0;
  while (position < Math.min(size, limit)) {
    const chunk = await readAt(handle, position, Math.min(CHUNK, size - position));
    const at = chunk.indexOf(NEWLINE);
    if (at !== -1) {
      parts.push(chunk.subarray(0, at));
      return Buffer.concat(parts).toString("utf8");
    }
    parts.push(chunk);
    position += chunk.byteLength;
  }
  return undefined;
}

async function readAt(handle: AuditFileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const n = await handle.read(buffer.subarray(filled), position + filled);
    if (n === 0) break;
    filled += n;
  }
  return buffer.subarray(0, filled);
}

/**
 * The last record of `origin` in `file`, reading backwards in chunks (synchronous, for startup).
 * Only the first `limit` bytes count when given (e.g. what is known to be durable).
 */
export function lastOfOriginSync(file: string, origin: string, limit?: number): AuditChainHead | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const needle = `"origin":${JSON.stringify(origin)},`;
    let end = Math.min(fstatSync(fd).size, limit ?? Number.POSITIVE_INFINITY);
    let carry = Buffer.alloc(0);
    while (end > 0) {
      const start = Math.max(0, end - (1 << 16));
      const chunk = Buffer.alloc(end - start);
      readSync(fd, chunk, 0, chunk.byteLength, start);
      const buf = Buffer.concat([chunk, carry]);
      const lines = buf.toString("utf8").split("\n");
      // The first piece may be cut mid-line unless the chunk starts the file.
      carry = start === 0 ? Buffer.alloc(0) : Buffer.from(lines.shift() ?? "", "utf8");
      for (let i = lines.length - 1; i >= 0; i -= 1) {
        const line = lines[i] as string;
        if (!line.includes(needle)) continue;
        try {
          const r = JSON.parse(line) as AuditRecord;
          if (r.origin === origin && Number.isSafeInteger(r.seq) && typeof r.hash === "string") return { origin, seq: r.seq, hash: r.hash };
        } catch {
          // a torn or foreign line: keep looking further back
        }
      }
      if (start === 0 && carry.byteLength === 0) break;
      end = start;
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}
