// Issue 13's findings against the real file system, real child processes and the local S3
// server: each of these lost, duplicated or silently misfiled records before.
import { execFileSync, spawnSync } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditLog, verifyAuditLog } from "@openrtc/core/audit";
import { fileSink, nodeFileIo } from "../src/file/index.ts";
import type { AuditFileIo } from "../src/file/index.ts";
import { s3Sink } from "../src/s3/index.ts";
import { BUCKET, clientConfig, collectLines, startS3 } from "./s3-helpers.ts";
import type { S3Server } from "./s3-helpers.ts";

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "audit-trust-"));
  path = join(dir, "audit.jsonl");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []);

describe("file sink", () => {
  it("a 400 ms fsync stall with a 150 ms write timeout puts each record on disk once", async () => {
    const slowIo: AuditFileIo = {
      ...nodeFileIo,
      async open(p, options) {
        const handle = await nodeFileIo.open(p, options);
        return Object.assign(Object.create(Object.getPrototypeOf(handle) as object) as typeof handle, handle, {
          identity: handle.identity?.bind(handle),
          size: handle.size.bind(handle),
          write: handle.write.bind(handle),
          read: handle.read.bind(handle),
          truncate: handle.truncate.bind(handle),
          chmod: handle.chmod.bind(handle),
          close: handle.close.bind(handle),
          datasync: async () => {
            await new Promise((resolve) => setTimeout(resolve, 400));
            await handle.datasync();
          },
        });
      },
    };
    const sink = fileSink({ path, io: slowIo });
    const log = new AuditLog({ origin: "w1", sinks: [sink], writeTimeoutMs: 150, retry: { initialMs: 10, maxMs: 20 } });
    for (let i = 0; i < 3; i++) log.emit("x", { i });
    await new Promise((resolve) => setTimeout(resolve, 1200));
    await log.close();
    expect(lines(path).map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3]);
    expect(verifyAuditLog(lines(path))).toMatchObject({ ok: true, records: 3 });
  });

  const rotations: Array<[string, (p: string) => void]> = [
    ["rm of the active file", (p) => rmSync(p)],
    ["logrotate create (rename, new empty file)", (p) => {
      renameSync(p, `${p}.1`);
      appendFileSync(p, "");
    }],
    ["logrotate nocreate (rename only)", (p) => renameSync(p, `${p}.1`)],
    ["logrotate copytruncate", (p) => {
      copyFileSync(p, `${p}.1`);
      truncateSync(p, 0);
    }],
  ];
  it.each(rotations)("after %s the chain continues at the configured path, nothing acknowledged is lost", async (_name, rotate) => {
    const warnings: string[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w.code) });
    const log = new AuditLog({ origin: "w1", sinks: [sink] });
    for (let i = 0; i < 3; i++) log.emit("before", { i });
    expect((await log.flush()).ok).toBe(true);
    rotate(path);
    for (let i = 0; i < 3; i++) log.emit("after", { i });
    expect((await log.flush()).ok).toBe(true);
    await log.close();
    const active = lines(path);
    expect(active.map((l) => JSON.parse(l).event)).toEqual(["after", "after", "after"]);
    expect(verifyAuditLog(active, { partial: true })).toMatchObject({ ok: true, records: 3 });
    if (existsSync(`${path}.1`)) expect(verifyAuditLog([...lines(`${path}.1`), ...active])).toMatchObject({ ok: true, records: 6 });
    expect(warnings.some((w) => w === "file_replaced" || w === "file_truncated")).toBe(true);
  });

  it("records emitted just before process.exit() are on disk (no close, no flush)", () => {
    const child = fileURLToPath(new URL("./exit-child.ts", import.meta.url));
    const result = spawnSync(process.execPath, ["--import", "tsx", "--conditions=@openrtc/source", child, path, "exit"], { encoding: "utf8" });
    expect(result.status).toBe(0);
    expect(lines(path).map((l) => JSON.parse(l).event)).toEqual(["worker.exited", "worker.exited", "worker.exited"]);
    expect(verifyAuditLog(lines(path))).toMatchObject({ ok: true, records: 3 });
  });

  it("records emitted just before an uncaught exception are on disk", () => {
    const child = fileURLToPath(new URL("./exit-child.ts", import.meta.url));
    const result = spawnSync(process.execPath, ["--import", "tsx", "--conditions=@openrtc/source", child, path, "throw"], { encoding: "utf8" });
    expect(result.status).not.toBe(0); // the crash is not hidden
    expect(result.stderr).toContain("boom");
    expect(lines(path)).toHaveLength(3);
  });

  it("restart with a fixed origin continues the chain (seq and prev_hash) with no user code", async () => {
    for (let run = 0; run < 3; run++) {
      const log = new AuditLog({ origin: "worker-7", sinks: [fileSink({ path })] });
      log.emit("deployment.started", { run });
      await log.close();
    }
    expect(lines(path).map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3]);
    expect(verifyAuditLog(lines(path))).toMatchObject({ ok: true, records: 3, origins: 1 });
  });

  it("fsyncs the directory after creating and after rotating the file (traced syscalls)", (context) => {
    const strace = spawnSync("strace", ["-V"]);
    if (strace.status !== 0) context.skip("strace is not installed (scripts/dev.sh setup installs it)");
    const child = fileURLToPath(new URL("./exit-child.ts", import.meta.url));
    const trace = join(dir, "trace");
    execFileSync("strace", ["-f", "-o", trace, "-e", "trace=openat,rename,renameat,renameat2,fsync,fdatasync", process.execPath, "--import", "tsx", "--conditions=@openrtc/source", child, path, "rotate"]);
    const calls = readFileSync(trace, "utf8").split("\n");
    const dirFds = new Set(calls.filter((l) => l.includes(`openat(AT_FDCWD, "${dir}", O_RDONLY`)).map((l) => /= (\d+)$/.exec(l)?.[1]));
    const fsyncOfDir = (l: string) => /\bfsync\((\d+)\)/.test(l) && dirFds.has(/\bfsync\((\d+)\)/.exec(l)![1]);
    const create = calls.findIndex((l) => l.includes(`"${path}"`) && l.includes("O_CREAT"));
    const rename = calls.findIndex((l) => /rename(at2?)?\(/.test(l) && l.includes(`"${path}"`));
    expect(create).toBeGreaterThanOrEqual(0);
    expect(rename).toBeGreaterThan(create);
    expect(calls.slice(create).some(fsyncOfDir)).toBe(true);
    expect(calls.slice(rename).some(fsyncOfDir)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.endsWith(".jsonl")).length).toBeGreaterThan(1);
  });
});

describe("S3 sink", () => {
  let server: S3Server;
  beforeEach(async () => {
    server = await startS3();
  });
  afterEach(async () => {
    await server.stop();
  });

  it("two runs with one fixed origin: the second never overwrites the first; the collision is kept and reported", async () => {
    const run = async (spool: string, tag: string) => {
      const sink = await s3Sink({ bucket: BUCKET, prefix: "p", spoolDir: join(dir, spool), clientConfig: clientConfig(server.port), batch: { maxDelayMs: 1 } });
      // No `origin` given to s3Sink and a fresh spool: chainHead cannot tell, so each run starts the origin at seq 1 again.
      const log = new AuditLog({ origin: "fixed", sinks: [sink], clock: () => 1_763_800_000 });
      for (let i = 0; i < 5; i++) log.emit("x", { tag, i });
      await log.flush();
      await sink.flush();
      const stats = sink.stats();
      await log.close();
      return stats;
    };
    expect(await run("spool-a", "a")).toMatchObject({ collisions: 0 });
    const second = await run("spool-b", "b");
    expect(second.collisions).toBeGreaterThan(0);
    const stored = await collectLines(server.port, "p");
    expect(stored.map((l) => JSON.parse(l).tag)).toEqual(["a", "a", "a", "a", "a"]);
    expect(verifyAuditLog(stored)).toMatchObject({ ok: true, records: 5 });
    const kept = readdirSync(join(dir, "spool-b", "collisions"));
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(dir, "spool-b", "collisions", kept[0]!), "utf8")).toContain('"tag":"b"');
  });
});
