import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditRecord } from "@openrtc/core/audit";
import { nodeFileIo } from "./file-io.ts";
import { afterEach, beforeEach } from "vitest";
import type { AuditFileHandle, AuditFileIo } from "./file-io.ts";

export async function tempDir(prefix = "file-sink-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A fresh temporary directory for each test, removed after it; `onReady` receives its path. */
export function useTempDir(onReady: (dir: string) => void): void {
  let cleanup: (() => Promise<void>) | undefined;
  beforeEach(async () => {
    const made = await tempDir();
    cleanup = made.cleanup;
    onReady(made.dir);
  });
  afterEach(async () => {
    await cleanup?.();
  });
}

/** Chained records as the AuditLog writes them (hash = SHA-256 of the JSON without `hash`). */
export function chain(count: number, options: { origin?: string; from?: AuditRecord; timestamp?: number } = {}): AuditRecord[] {
  const origin = options.origin ?? "test-origin";
  let seq = options.from?.seq ?? 0;
  let prev = options.from?.hash ?? "0".repeat(64);
  const out: AuditRecord[] = [];
  for (let i = 0; i < count; i++) {
    seq += 1;
    const body = {
      seq,
      timestamp: options.timestamp ?? 1_700_000_000 + seq,
      event: "worker.rejected",
      actor: "system",
      target: `job-${seq}`,
      result: "ok",
      version: "v1",
      reason: "draining",
      origin,
      prev_hash: prev,
    };
    const hash = createHash("sha256").update(JSON.stringify(body)).digest("hex");
    out.push({ ...body, hash });
    prev = hash;
  }
  return out;
}

export async function readRecords(path: string): Promise<AuditRecord[]> {
  const text = await readFile(path, "utf8");
  if (text !== "" && !text.endsWith("\n")) throw new Error(`${path} does not end in a newline`);
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as AuditRecord);
}

/** Per-origin chain check: seq from 1 without gaps, prev_hash links, hash recomputes. */
export function chainProblems(records: readonly AuditRecord[]): string[] {
  const heads = new Map<string, { seq: number; hash: string }>();
  const problems: string[] = [];
  for (const r of records) {
    const head = heads.get(r.origin) ?? { seq: 0, hash: "0".repeat(64) };
    const { hash, ...body } = r;
    const expected = createHash("sha256").update(JSON.stringify(body)).digest("hex");
    if (r.seq !== head.seq + 1) problems.push(`${r.origin}: seq ${r.seq} after ${head.seq}`);
    if (r.prev_hash !== head.hash) problems.push(`${r.origin}#${r.seq}: prev_hash does not link`);
    if (hash !== expected) problems.push(`${r.origin}#${r.seq}: hash mismatch`);
    heads.set(r.origin, { seq: r.seq, hash });
  }
  return problems;
}

export interface Faults {
  /** Called before each write; return a fault to inject on this call. */
  write?: (call: number, data: Uint8Array) => { written?: number; error: NodeJS.ErrnoException } | undefined;
  datasync?: (call: number) => NodeJS.ErrnoException | undefined;
  truncate?: (call: number) => NodeJS.ErrnoException | undefined;
  rename?: (call: number) => NodeJS.ErrnoException | undefined;
  create?: (call: number, path: string) => NodeJS.ErrnoException | undefined;
}

export function errno(code: string, message = code): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

/**
 * Node's real fs with faults injected at chosen calls. A write fault may first write
 * `written` bytes for real, as a disk filling up mid-write does.
 */
export function faultyIo(faults: Faults): AuditFileIo & { calls: Record<string, number> } {
  const calls: Record<string, number> = { write: 0, datasync: 0, truncate: 0, rename: 0, create: 0 };
  const bump = (name: string): number => (calls[name] = (calls[name] ?? 0) + 1);
  const wrap = (inner: AuditFileHandle): AuditFileHandle => ({
    read: (into, position) => inner.read(into, position),
    size: () => inner.size(),
    ...(inner.identity ? { identity: () => inner.identity!() } : {}),
    ...(inner.fd === undefined ? {} : { fd: inner.fd }),
    chmod: (mode) => inner.chmod(mode),
    close: () => inner.close(),
    async write(data, position) {
      const fault = faults.write?.(bump("write"), data);
      if (fault) {
        if (fault.written) await inner.write(data.subarray(0, fault.written), position);
        throw fault.error;
      }
      return inner.write(data, position);
    },
    async datasync() {
      const error = faults.datasync?.(bump("datasync"));
      if (error) throw error;
      return inner.datasync();
    },
    async truncate(length) {
      const error = faults.truncate?.(bump("truncate"));
      if (error) throw error;
      return inner.truncate(length);
    },
  });
  return {
    calls,
    ...nodeFileIo,
    async open(path, options) {
      if (options.create) {
        const error = faults.create?.(bump("create"), path);
        if (error) throw error;
      }
      return wrap(await nodeFileIo.open(path, options));
    },
    async rename(from, to) {
      const error = faults.rename?.(bump("rename"));
      if (error) throw error;
      return nodeFileIo.rename(from, to);
    },
  };
}

/**
 * Bundles a TypeScript entry (and the workspace sources it imports) into one ES module that a
 * bare `node` runs, so child processes start in ~50 ms instead of paying for a TypeScript
 * loader. esbuild comes with tsx, the workspace's TypeScript runner.
 */
export async function bundleForNode(entry: string, outfile: string): Promise<void> {
  const require = createRequire(import.meta.url);
  const esbuild = createRequire(require.resolve("tsx"))("esbuild") as {
    build(options: Record<string, unknown>): Promise<unknown>;
  };
  await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    conditions: ["@openrtc/source"],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: "error",
  });
}
