import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { AuditLog, listAuditFiles, readAuditFiles, verifyAuditLog } from "@openrtc/core/audit";
import type { AuditRecord } from "@openrtc/core/audit";
import { describe, expect, it } from "vitest";
import { FileSinkError, fileSink, openFileSink } from "./file-sink.ts";
import { bundleForNode, chain, chainProblems, errno, faultyIo, readRecords, useTempDir } from "./test-helpers.ts";

const execFileAsync = promisify(execFile);

let dir: string;
let path: string;
useTempDir((made) => {
  dir = made;
  path = join(dir, "audit.jsonl");
});

const lines = (records: readonly object[]): string => records.map((r) => `${JSON.stringify(r)}\n`).join("");

describe("unusable paths", () => {
  it("a missing directory fails the write with a clear error, and a later write succeeds once it exists", async () => {
    const nested = join(dir, "logs", "audit.jsonl");
    const sink = fileSink({ path: nested });
    const error = await sink.write(chain(1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileSinkError);
    expect((error as Error).message).toMatch(
      new RegExp(`^cannot open audit file ${nested}: ENOENT: no such file or directory, .*; create its directory first$`),
    );
    await mkdir(join(dir, "logs"));
    await sink.write(chain(1));
    await sink.close();
    expect(await readRecords(nested)).toHaveLength(1);
  });

  it("openFileSink fails fast on a path under a regular file", async () => {
    await writeFile(join(dir, "file"), "");
    await expect(openFileSink({ path: join(dir, "file", "audit.jsonl") })).rejects.toThrow(
      /cannot open audit file .*file\/audit\.jsonl: ENOTDIR: .*; `path` must name a file inside an existing directory/,
    );
  });

  it("a path that is a directory says so", async () => {
    await mkdir(join(dir, "audit.jsonl"));
    await expect(openFileSink({ path })).rejects.toThrow(
      /cannot open audit file .*audit\.jsonl: EISDIR: .*; `path` must name a file inside an existing directory/,
    );
  });

  it("fails every queued batch when the file cannot be opened", async () => {
    const sink = fileSink({ path: join(dir, "missing", "audit.jsonl") });
    const results = await Promise.allSettled([sink.write(chain(1)), sink.write(chain(1)), sink.write(chain(1))]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
  });

  it("a directory without write permission gives EACCES and a hint", async () => {
    const expected = /^cannot open audit file .*: EACCES: .*; give this process write permission on the file and its directory$/;
    await chmod(dir, 0o755);
    const locked = join(dir, "locked");
    await mkdir(locked, { mode: 0o755 });
    if (process.getuid?.() !== 0) {
      await chmod(locked, 0o500);
      await expect(openFileSink({ path: join(locked, "audit.jsonl") })).rejects.toThrow(expected);
      return;
    }
    // root may write anywhere: run the sink in a child process as an unprivileged user instead.
    const script = join(dir, "open-child.mjs");
    await bundleForNode(fileURLToPath(new URL("./test-open-child.ts", import.meta.url)), script);
    const { stdout } = await execFileAsync(process.execPath, [script, join(locked, "audit.jsonl")], {
      uid: 65534,
      gid: 65534,
      cwd: dir,
    });
    const outcome = JSON.parse(stdout) as { ok: boolean; name?: string; message?: string };
    expect(outcome).toMatchObject({ ok: false, name: "FileSinkError" });
    expect(outcome.message).toMatch(expected);
  });
});

describe("disk errors", () => {
  it("a disk filling up mid-write rejects the batch and leaves no partial line behind", async () => {
    const records = chain(6);
    const io = faultyIo({ write: (call) => (call === 2 ? { written: 50, error: errno("ENOSPC", "no space left on device") } : undefined) });
    const sink = fileSink({ path, io });
    await sink.write(records.slice(0, 2));
    await expect(sink.write(records.slice(2, 4))).rejects.toThrow(
      `cannot write audit records to ${path}: ENOSPC: no space left on device`,
    );
    expect(await readFile(path, "utf8")).toBe(lines(records.slice(0, 2)));
    // The AuditLog retries the same records; they land exactly once.
    await sink.write(records.slice(2, 4));
    await sink.write(records.slice(4));
    await sink.close();
    const all = await readRecords(path);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(chainProblems(all)).toEqual([]);
  });

  it("a failed fdatasync counts the batch as lost: it is rewritten through a fresh descriptor, once", async () => {
    const records = chain(4);
    const warnings: string[] = [];
    const io = faultyIo({ datasync: (call) => (call === 2 ? errno("EIO", "i/o error") : undefined) });
    const sink = fileSink({ path, io, onWarning: (w) => warnings.push(w.code) });
    await sink.write(records.slice(0, 2));
    await sink.write(records.slice(2));
    expect(warnings).toEqual(["fsync_failed"]);
    expect(sink.stats()).toMatchObject({ records: 4, batches: 2 });
    await sink.close();
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
  });

  it("fails loudly when the rewrite after a failed fdatasync fails too (never acknowledged), and the retry writes it once", async () => {
    const records = chain(4);
    const io = faultyIo({ datasync: (call) => (call === 2 || call === 3 ? errno("EIO", "i/o error") : undefined) });
    const sink = fileSink({ path, io, onWarning: () => {} });
    await sink.write(records.slice(0, 2));
    await expect(sink.write(records.slice(2))).rejects.toThrow(/fdatasync .* failed .* rewriting the batch through a fresh descriptor failed too/);
    expect(sink.stats()).toMatchObject({ records: 2, batches: 1 });
    await sink.write(records.slice(2));
    await sink.close();
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
  });

  it("fails the batches queued behind a failed round too, so the file never gets a gap", async () => {
    const records = chain(4);
    const queued: Array<Promise<void>> = [];
    let sink: ReturnType<typeof fileSink> | undefined;
    const io = faultyIo({
      datasync: (call) => {
        if (call === 2) return errno("EIO"); // the rewrite through a fresh descriptor fails too
        if (call !== 1) return undefined;
        // While the first round's fsync fails, two more batches are already waiting.
        queued.push(sink!.write(records.slice(1, 2)), sink!.write(records.slice(2, 3)));
        return errno("EIO");
      },
    });
    sink = fileSink({ path, io });
    await sink.open();
    await expect(sink.write(records.slice(0, 1))).rejects.toThrow(/EIO/);
    expect((await Promise.allSettled(queued)).map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(await readFile(path, "utf8")).toBe("");
    // The caller retries in order, and everything lands once, in order.
    await sink.write(records);
    await sink.close();
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
  });

  it("when cutting a failed write's leftovers fails too, the next write cuts them first", async () => {
    const records = chain(3);
    const io = faultyIo({
      write: (call) => (call === 2 ? { written: 30, error: errno("EIO") } : undefined),
      truncate: (call) => (call === 1 ? errno("EIO") : undefined),
    });
    const sink = fileSink({ path, io });
    await sink.write(records.slice(0, 1));
    await expect(sink.write(records.slice(1, 2))).rejects.toThrow(/EIO/);
    expect((await readFile(path, "utf8")).length).toBe(lines(records.slice(0, 1)).length + 30);
    await sink.write(records.slice(1));
    await sink.close();
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it("refuses to append after leftovers it still cannot cut", async () => {
    const records = chain(2);
    const io = faultyIo({
      write: (call) => (call === 2 ? { written: 30, error: errno("EIO") } : undefined),
      truncate: () => errno("EIO", "truncate failed"),
    });
    const sink = fileSink({ path, io });
    await sink.write(records.slice(0, 1));
    await expect(sink.write(records.slice(1))).rejects.toThrow(/EIO/);
    await expect(sink.write(records.slice(1))).rejects.toThrow(/truncate failed/);
    expect(io.calls.write).toBe(2);
    await sink.close();
  });
});

describe("with a real AuditLog", () => {
  it("a full disk delays records but loses none: the AuditLog retries and every record lands once", async () => {
    const io = faultyIo({
      write: (call) => (call <= 3 ? { written: call * 7, error: errno("ENOSPC", "no space left on device") } : undefined),
    });
    const errors: string[] = [];
    const sink = fileSink({ path, io });
    const log = new AuditLog({
      sinks: [sink],
      retry: { initialMs: 1, maxMs: 5 },
      hooks: { onSinkError: (_name, error) => errors.push((error as Error).message) },
    });
    for (let i = 0; i < 50; i++) log.emit("worker.rejected", { target: `job-${i}`, reason: "draining" });
    const result = await log.close();
    expect(result).toEqual({ ok: true, undelivered: [] });
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/^cannot write audit records to .*audit\.jsonl: ENOSPC: no space left on device$/);
    const text = await readFile(path, "utf8");
    expect(text.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as AuditRecord).seq)).toEqual(
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    expect(verifyAuditLog(text)).toMatchObject({ ok: true, records: 50 });
  });
});

describe("rotation errors", () => {
  const rotating = (records: readonly AuditRecord[]) => ({
    maxBytes: Buffer.byteLength(lines(records.slice(0, 2))),
  });

  it("a failed rename rejects the batch, keeps the active file whole, and the next write rotates", async () => {
    const records = chain(6);
    const io = faultyIo({ rename: (call) => (call === 1 ? errno("EBUSY") : undefined) });
    const sink = fileSink({ path, io, rotate: rotating(records) });
    await sink.write(records.slice(0, 2));
    await expect(sink.write(records.slice(2, 4))).rejects.toThrow(/cannot rotate .*audit\.jsonl to .*audit\.00000001\.jsonl: EBUSY/);
    expect(await readFile(path, "utf8")).toBe(lines(records.slice(0, 2)));
    await sink.write(records.slice(2, 4));
    await sink.write(records.slice(4));
    await sink.close();
    const all: AuditRecord[] = [];
    for await (const { line } of readAuditFiles(path)) all.push(JSON.parse(line) as AuditRecord);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(chainProblems(all)).toEqual([]);
  });

  it("acknowledges the batches written before a rotation failed inside one group", async () => {
    const records = chain(6);
    const io = faultyIo({ rename: () => errno("EBUSY") });
    const sink = fileSink({ path, io, rotate: rotating(records) });
    await sink.open();
    const results = await Promise.allSettled([
      sink.write(records.slice(0, 2)),
      sink.write(records.slice(2, 4)),
      sink.write(records.slice(4)),
    ]);
    await sink.close();
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected"]);
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([1, 2]);
  });

  it("when the new active file cannot be created, the next write creates it and the chain goes on", async () => {
    const records = chain(6);
    const io = faultyIo({ create: (call) => (call === 2 ? errno("EMFILE", "too many open files") : undefined) });
    const sink = fileSink({ path, io, rotate: rotating(records) });
    await sink.write(records.slice(0, 2));
    await expect(sink.write(records.slice(2, 4))).rejects.toThrow(/cannot open audit file .*: EMFILE/);
    expect(await sink.lastRecord()).toEqual(records[1]);
    await sink.write(records.slice(2, 4));
    await sink.write(records.slice(4));
    await sink.close();
    expect((await listAuditFiles(path)).length).toBe(3);
    const all: AuditRecord[] = [];
    for await (const { line } of readAuditFiles(path)) all.push(JSON.parse(line) as AuditRecord);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
