import { readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { listAuditFiles, readAuditFiles, rotatedAuditFilePath } from "@openrtc/core/audit";
import type { AuditRecord } from "@openrtc/core/audit";
import { describe, expect, it } from "vitest";
import { fileSink } from "./file-sink.ts";
import { chain, chainProblems, readRecords, useTempDir } from "./test-helpers.ts";

let dir: string;
useTempDir((made) => {
  dir = made;
});

async function allRecords(base: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const { line, terminated } of readAuditFiles(base)) {
    expect(terminated).toBe(true);
    out.push(JSON.parse(line) as AuditRecord);
  }
  return out;
}

const lineBytes = (records: readonly AuditRecord[]): number =>
  records.reduce((n, r) => n + Buffer.byteLength(`${JSON.stringify(r)}\n`), 0);

describe("rotation by size", () => {
  it("starts a new file before a batch would pass maxBytes; the chain runs on across files", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(30);
    // Room for two 3-record batches a file, not three.
    const maxBytes = 2 * lineBytes(records.slice(27, 30));
    const sink = fileSink({ path, rotate: { maxBytes } });
    for (let i = 0; i < 30; i += 3) await sink.write(records.slice(i, i + 3));
    const stats = sink.stats();
    await sink.close();
    const files = await listAuditFiles(path);
    expect(files).toEqual([1, 2, 3, 4].map((i) => rotatedAuditFilePath(path, i)).concat(path));
    for (const file of files) expect((await stat(file)).size).toBeLessThanOrEqual(maxBytes);
    expect(stats.rotations).toBe(4);
    const all = await allRecords(dir);
    expect(all.map((r) => r.seq)).toEqual(records.map((r) => r.seq));
    expect(chainProblems(all)).toEqual([]);
    for (const file of files) expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it("never splits a batch: one larger than maxBytes gets a file of its own", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(12);
    const sink = fileSink({ path, rotate: { maxBytes: 100 } });
    await sink.write(records.slice(0, 2));
    await sink.write(records.slice(2, 12));
    await sink.close();
    expect((await readRecords(rotatedAuditFilePath(path, 1))).map((r) => r.seq)).toEqual([1, 2]);
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it("rotates inside one group commit at batch boundaries and acknowledges every batch", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(20);
    const sink = fileSink({ path, rotate: { maxBytes: lineBytes(records.slice(16, 20)) } });
    await sink.open();
    const writes = [];
    for (let i = 0; i < 20; i += 2) writes.push(sink.write(records.slice(i, i + 2)));
    await Promise.all(writes);
    const stats = sink.stats();
    await sink.close();
    expect(stats).toMatchObject({ batches: 10, records: 20, rotations: 4, syncs: 5 });
    const files = await listAuditFiles(path);
    expect(await Promise.all(files.map(async (f) => (await readRecords(f)).length))).toEqual([4, 4, 4, 4, 4]);
    expect(chainProblems(await allRecords(path))).toEqual([]);
  });

  it("numbers on after the existing rotated files when reopened", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(6);
    const maxBytes = lineBytes(records.slice(0, 2));
    let sink = fileSink({ path, rotate: { maxBytes } });
    for (let i = 0; i < 4; i += 2) await sink.write(records.slice(i, i + 2));
    await sink.close();
    sink = fileSink({ path, rotate: { maxBytes } });
    expect(await sink.lastRecord()).toEqual(records[3]);
    await sink.write(records.slice(4, 6));
    await sink.close();
    expect(await listAuditFiles(path)).toEqual([rotatedAuditFilePath(path, 1), rotatedAuditFilePath(path, 2), path]);
    expect((await allRecords(path)).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });
  it("never overwrites a rotated file that appeared after open", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(4);
    const sink = fileSink({ path, rotate: { maxBytes: lineBytes(records.slice(0, 2)) } });
    await sink.write(records.slice(0, 2));
    await writeFile(rotatedAuditFilePath(path, 1), "restored\n");
    await sink.write(records.slice(2));
    await sink.close();
    expect(await readFile(rotatedAuditFilePath(path, 1), "utf8")).toBe("restored\n");
    expect((await readRecords(rotatedAuditFilePath(path, 2))).map((r) => r.seq)).toEqual([1, 2]);
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([3, 4]);
  });
});

describe("rotation by age", () => {
  it("starts a new file once the active one is maxAgeSeconds old (injected clock)", async () => {
    const path = join(dir, "audit.jsonl");
    let now = 1_000;
    const records = chain(4);
    const sink = fileSink({ path, rotate: { maxAgeSeconds: 60 }, clock: () => now });
    await sink.write(records.slice(0, 1));
    now += 59;
    await sink.write(records.slice(1, 2));
    now += 1;
    await sink.write(records.slice(2, 3));
    now += 3600;
    await sink.write(records.slice(3, 4));
    await sink.close();
    expect(await Promise.all((await listAuditFiles(path)).map(async (f) => (await readRecords(f)).map((r) => r.seq)))).toEqual([
      [1, 2],
      [3],
      [4],
    ]);
  });

  it("an empty active file never rotates, however old", async () => {
    const path = join(dir, "audit.jsonl");
    let now = 1_000;
    const sink = fileSink({ path, rotate: { maxAgeSeconds: 60 }, clock: () => now });
    await sink.open();
    now += 10_000;
    await sink.write(chain(1));
    await sink.close();
    expect(await listAuditFiles(path)).toEqual([path]);
  });

  it("after a restart, ages the active file from its first record's timestamp", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(2, { timestamp: 5_000 });
    await writeFile(path, `${JSON.stringify(records[0])}\n`, { mode: 0o600 });
    const sink = fileSink({ path, rotate: { maxAgeSeconds: 60 }, clock: () => 5_060 });
    await sink.write(records.slice(1));
    await sink.close();
    expect(await listAuditFiles(path)).toEqual([rotatedAuditFilePath(path, 1), path]);
  });
});

describe("resuming the chain", () => {
  it("takes the last record from the newest rotated file when the active file is missing", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(4);
    const sink = fileSink({ path, rotate: { maxBytes: lineBytes(records.slice(0, 2)) } });
    for (let i = 0; i < 4; i += 2) await sink.write(records.slice(i, i + 2));
    await sink.close();
    // A crash between rename and creating the new active file leaves this state.
    await rename(path, rotatedAuditFilePath(path, 2));
    const reopened = fileSink({ path });
    const info = await reopened.open();
    expect(info.lastRecord).toEqual(records[3]);
    await reopened.close();
    expect(await readFile(path, "utf8")).toBe("");
  });

  it("takes it from the newest rotated file when the active file is empty", async () => {
    const path = join(dir, "audit.jsonl");
    const records = chain(2);
    await writeFile(rotatedAuditFilePath(path, 1), records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    await writeFile(path, "", { mode: 0o600 });
    const sink = fileSink({ path });
    expect(await sink.lastRecord()).toEqual(records[1]);
    await sink.close();
  });
});
