import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fileSink, openFileSink } from "./file-sink.ts";
import type { FileSinkWarning } from "./file-sink.ts";
import { chain, chainProblems, faultyIo, readRecords, useTempDir } from "./test-helpers.ts";

let dir: string;
useTempDir((made) => {
  dir = made;
});

describe("fileSink", () => {
  it("appends each record as JSON.stringify(record) + newline, in order", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path });
    const records = chain(5);
    await sink.write(records.slice(0, 2));
    await sink.write(records.slice(2));
    await sink.close();
    expect(await readFile(path, "utf8")).toBe(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    expect(chainProblems(await readRecords(path))).toEqual([]);
  });

  it("an empty batch resolves without touching the file", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path });
    await sink.write([]);
    await expect(stat(path)).rejects.toMatchObject({ code: "ENOENT" });
    await sink.close();
  });

  it("serializes at write time, so later mutation of the objects changes nothing", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path });
    const [record] = chain(1);
    const pending = sink.write([record!]);
    (record as { target: string }).target = "mutated";
    await pending;
    await sink.close();
    expect((await readRecords(path))[0]!.target).toBe("job-1");
  });

  it("continues an existing log and reports its last record on open", async () => {
    const path = join(dir, "audit.jsonl");
    const first = chain(3);
    const a = fileSink({ path });
    await a.write(first);
    await a.close();
    const { sink, info } = await openFileSink({ path });
    expect(info.lastRecord).toEqual(first[2]);
    expect(info.recovered).toBeUndefined();
    await sink.write(chain(2, { from: first[2] }));
    expect(await sink.lastRecord()).toMatchObject({ seq: 5 });
    await sink.close();
    const all = await readRecords(path);
    expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(chainProblems(all)).toEqual([]);
  });

  it("lastRecord of a new log is undefined", async () => {
    const sink = fileSink({ path: join(dir, "audit.jsonl") });
    expect(await sink.lastRecord()).toBeUndefined();
    await sink.close();
  });
});

describe("permissions", () => {
  it("creates the file 0600 even under a permissive umask", async () => {
    const path = join(dir, "audit.jsonl");
    const previous = process.umask(0o000);
    try {
      const sink = fileSink({ path });
      await sink.write(chain(1));
      await sink.close();
    } finally {
      process.umask(previous);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it("honours an explicit mode", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path, mode: 0o640 });
    await sink.open();
    await sink.close();
    expect((await stat(path)).mode & 0o777).toBe(0o640);
  });

  it("warns, without changing it, when an existing file is more open than mode", async () => {
    const path = join(dir, "audit.jsonl");
    await writeFile(path, "");
    await chmod(path, 0o644);
    const warnings: FileSinkWarning[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w) });
    await sink.open();
    await sink.close();
    expect(warnings).toEqual([
      {
        code: "permissive_mode",
        file: path,
        message: `audit file ${path} has mode 0o644, more open than 0o600; run chmod 600 on it`,
      },
    ]);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
  });

  it("does not warn about a file already 0600", async () => {
    const path = join(dir, "audit.jsonl");
    await writeFile(path, "", { mode: 0o600 });
    const warnings: FileSinkWarning[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w) });
    await sink.open();
    await sink.close();
    expect(warnings).toEqual([]);
  });
});

describe("group commit", () => {
  it("coalesces batches issued together into one write+fsync", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path });
    await sink.open();
    const records = chain(200);
    const writes = [];
    for (let i = 0; i < 200; i += 2) writes.push(sink.write(records.slice(i, i + 2)));
    await Promise.all(writes);
    const stats = sink.stats();
    await sink.close();
    expect(stats).toMatchObject({ batches: 100, records: 200, syncs: 1 });
    expect(chainProblems(await readRecords(path))).toEqual([]);
  });

  it("coalesces every batch that arrives during an fsync into the next single round", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(101);
    const late: Array<Promise<void>> = [];
    let sink: ReturnType<typeof fileSink> | undefined;
    const io = faultyIo({
      datasync: (call) => {
        // While the first batch's fsync runs, 100 more batches arrive one by one.
        if (call === 1) for (let i = 1; i <= 100; i++) late.push(sink!.write(records.slice(i, i + 1)));
        return undefined;
      },
    });
    sink = fileSink({ path, io });
    await sink.open();
    await sink.write(records.slice(0, 1));
    await Promise.all(late);
    const stats = sink.stats();
    await sink.close();
    expect(stats).toMatchObject({ batches: 101, records: 101, syncs: 2 });
    expect((await readRecords(path)).map((r) => r.seq)).toEqual(records.map((r) => r.seq));
  });

  it("acknowledges a batch only after its fdatasync returned", async () => {
    const path = join(dir, "audit.jsonl");
    const events: string[] = [];
    const io = faultyIo({
      datasync: () => {
        events.push("datasync");
        return undefined;
      },
    });
    const sink = fileSink({ path, io });
    await sink.open();
    await sink.write(chain(1)).then(() => events.push("ack"));
    await sink.close();
    expect(events).toEqual(["datasync", "ack"]);
  });

  it("flush waits for every write issued before it", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path });
    const records = chain(30);
    let acked = 0;
    for (let i = 0; i < 30; i += 3) void sink.write(records.slice(i, i + 3)).then(() => (acked += 3));
    await sink.flush();
    expect(acked).toBe(30);
    await sink.close();
  });
});

describe("options and lifecycle errors", () => {
  it.each([
    [undefined, /pass options/],
    [{ path: "" }, /`path` must be a non-empty file path/],
    [{ path: "/tmp/a.jsonl", fsync: false }, /`fsync` cannot be turned off/],
    [{ path: "/tmp/a.jsonl", rotate: { maxBytes: 0 } }, /`rotate.maxBytes` must be a positive number, got 0/],
    [{ path: "/tmp/a.jsonl", rotate: { maxAgeSeconds: Number.NaN } }, /`rotate.maxAgeSeconds` must be a positive number/],
    [{ path: "/tmp/a.jsonl", mode: 0o1777 }, /`mode` must be permission bits like 0o600/],
  ])("rejects bad options %#", (options, message) => {
    expect(() => fileSink(options as never)).toThrow(message);
  });

  it("a closed sink rejects writes and says so", async () => {
    const sink = fileSink({ path: join(dir, "audit.jsonl") });
    await sink.write(chain(1));
    await sink.close();
    await sink.close();
    await expect(sink.write(chain(1))).rejects.toThrow(/is closed; records not written/);
    await expect(sink.open()).rejects.toThrow(/is closed/);
  });

  it("close waits for queued writes to become durable", async () => {
    const path = join(dir, "audit.jsonl");
    const sink = fileSink({ path });
    const pending = sink.write(chain(10));
    await sink.close();
    await pending;
    expect(await readRecords(path)).toHaveLength(10);
  });

  it("refuses a second sink on the same file in one process, until the first closes", async () => {
    const path = join(dir, "audit.jsonl");
    const a = fileSink({ path });
    await a.open();
    const b = fileSink({ path: join(dir, ".", "audit.jsonl") });
    await expect(b.open()).rejects.toThrow(/another audit file sink in this process already writes/);
    await a.close();
    await b.open();
    await b.close();
  });
});
