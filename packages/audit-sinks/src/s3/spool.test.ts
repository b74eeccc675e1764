import { mkdtemp, readdir, readFile, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { S3SpoolFullError } from "./errors.ts";
import { Spool } from "./spool.ts";

let dir: string;
const clock = () => 1_000;
const limits = { maxRecords: 100, maxBytes: 1 << 20 };

function lines(from: number, to: number, origin = "o", timestamp = 1_763_800_000): Buffer {
  let text = "";
  for (let seq = from; seq <= to; seq++) text += `${JSON.stringify({ seq, timestamp, event: "e", origin })}\n`;
  return Buffer.from(text);
}

function open(options: Partial<{ maxBytes: number; segmentBytes: number }> = {}): Promise<Spool> {
  return Spool.open({ dir, maxBytes: options.maxBytes ?? 1 << 20, segmentBytes: options.segmentBytes ?? 1 << 20, clock });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "s3-spool-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("Spool", () => {
  it("re-uploads exactly the announced range after a crash, even when more records arrived", async () => {
    const first = await open();
    await first.append(lines(0, 4), 5);
    const batch = await first.nextBatch({ maxRecords: 3, maxBytes: 1 << 20 });
    expect([batch?.seqStart, batch?.seqEnd]).toEqual([0, 2]);
    await first.announce(batch!);
    await first.append(lines(5, 9), 5);
    // Crash: the upload's outcome is unknown, the process never completes the batch.
    await first.close();

    const second = await open();
    expect(second.pendingRecords).toBe(10);
    const again = await second.nextBatch({ maxRecords: 100, maxBytes: 1 << 20 });
    expect([again?.seqStart, again?.seqEnd, again?.body.toString()]).toEqual([0, 2, batch?.body.toString()]);
    await second.complete(again!);
    const rest = await second.nextBatch(limits);
    expect([rest?.seqStart, rest?.seqEnd]).toEqual([3, 9]);
    await second.close();
  });

  it("drops a torn last line (never acknowledged) at startup", async () => {
    const spool = await open();
    await spool.append(lines(0, 1), 2);
    await spool.close();
    const [segment] = (await readdir(dir)).filter((name) => name.startsWith("seg-"));
    await appendFile(join(dir, segment!), '{"seq":2,"timest');
    const again = await open();
    expect(again.pendingRecords).toBe(2);
    const batch = await again.nextBatch(limits);
    expect(batch?.body.toString()).toBe(lines(0, 1).toString());
    await again.close();
  });

  it("cuts objects at an origin change and at UTC midnight", async () => {
    const spool = await open();
    await spool.append(Buffer.concat([lines(0, 1, "a", 86_399), lines(2, 3, "a", 86_400), lines(0, 0, "b", 86_400)]), 5);
    const runs: string[] = [];
    for (let batch = await spool.nextBatch(limits); batch; batch = await spool.nextBatch(limits)) {
      runs.push(`${batch.origin}:${batch.seqStart}-${batch.seqEnd}@${batch.firstTimestamp}`);
      await spool.announce(batch);
      await spool.complete(batch);
    }
    expect(runs).toEqual(["a:0-1@86399", "a:2-3@86400", "b:0-0@86400"]);
    expect(spool.pendingRecords).toBe(0);
    expect(spool.pendingBytes).toBe(0);
    await spool.close();
  });

  it("cuts at maxBytes but still uploads a record larger than the limit on its own", async () => {
    const spool = await open();
    const big = Buffer.from(`${JSON.stringify({ seq: 0, timestamp: 1, origin: "o", pad: "x".repeat(70_000) })}\n`);
    await spool.append(Buffer.concat([big, lines(1, 2, "o", 1)]), 3);
    const first = await spool.nextBatch({ maxRecords: 100, maxBytes: 1_000 });
    expect([first?.seqStart, first?.seqEnd, first?.body.length]).toEqual([0, 0, big.length]);
    await spool.complete(first!);
    const second = await spool.nextBatch({ maxRecords: 100, maxBytes: 1_000 });
    expect([second?.seqStart, second?.seqEnd]).toEqual([1, 2]);
    await spool.close();
  });

  it("moves a line that no longer parses to quarantine.jsonl and goes on", async () => {
    const spool = await open();
    await spool.append(Buffer.concat([lines(0, 0), Buffer.from("garbage\n"), lines(2, 2)]), 3);
    const first = await spool.nextBatch(limits);
    expect([first?.seqStart, first?.seqEnd]).toEqual([0, 0]);
    await spool.complete(first!);
    const second = await spool.nextBatch(limits);
    expect([second?.seqStart, second?.seqEnd]).toEqual([2, 2]);
    expect(spool.quarantinedLines).toBe(1);
    expect(await readFile(join(dir, "quarantine.jsonl"), "utf8")).toBe("garbage\n");
    await spool.close();
  });

  it("reports a segment whose lines lost their newlines instead of spinning on it", async () => {
    const spool = await open();
    await spool.append(lines(0, 1), 2);
    const [segment] = (await readdir(dir)).filter((name) => name.startsWith("seg-"));
    const path = join(dir, segment!);
    await writeFile(path, (await readFile(path, "utf8")).replaceAll("\n", " "));
    await expect(spool.nextBatch(limits)).rejects.toThrow(/has an unterminated line at byte 0/);
    await spool.close();
  });

  it("rejects an append that would pass maxBytes, storing nothing of it", async () => {
    const spool = await open({ maxBytes: 200 });
    const batch = lines(0, 1);
    await spool.append(batch, 2);
    await expect(spool.append(lines(2, 5), 4)).rejects.toThrow(S3SpoolFullError);
    await expect(spool.append(lines(2, 5), 4)).rejects.toThrow(/spool is full.*spoolMaxBytes=200/);
    expect(spool.pendingRecords).toBe(2);
    expect(spool.pendingBytes).toBe(batch.length);
    await spool.close();
  });

  it("rotates segments and deletes each once uploaded; a restart resumes after the last one", async () => {
    const spool = await open({ segmentBytes: 100 });
    // Each line is about 60 bytes: a segment is sealed at its second line.
    for (let seq = 0; seq < 6; seq++) await spool.append(lines(seq, seq), 1);
    expect((await readdir(dir)).filter((name) => name.startsWith("seg-")).length).toBe(3);
    for (let batch = await spool.nextBatch(limits); batch; batch = await spool.nextBatch(limits)) {
      await spool.announce(batch);
      await spool.complete(batch);
    }
    await spool.close();
    expect((await readdir(dir)).filter((name) => name.startsWith("seg-"))).toEqual([]);
    const again = await open({ segmentBytes: 100 });
    await again.append(lines(6, 6), 1);
    await again.close();
    const third = await open();
    expect(third.pendingRecords).toBe(1);
    expect((await third.nextBatch(limits))?.seqStart).toBe(6);
    await third.close();
  });

  it("refuses a directory another live sink holds, and takes over one whose owner died", async () => {
    const spool = await open();
    await expect(open()).rejects.toThrow(/is in use by process \d+ \(this process\).*its own spoolDir/);
    await spool.close();
    await writeFile(join(dir, "spool.lock"), JSON.stringify({ pid: 2147483646, host: "gone", boot: null, start: null }));
    const taken = await open();
    expect(JSON.parse(await readFile(join(dir, "spool.lock"), "utf8"))).toMatchObject({ pid: process.pid });
    await taken.close();
  });

  it("takes over a spool whose lock names this very pid from a previous life (a container restarted as pid 1)", async () => {
    const { currentOwner } = await import("../file/file-lock.ts");
    await writeFile(join(dir, "spool.lock"), JSON.stringify({ ...currentOwner(), start: "1" }));
    const spool = await open();
    expect(JSON.parse(await readFile(join(dir, "spool.lock"), "utf8"))).toEqual(currentOwner());
    await spool.close();
  });

  it("refuses to guess when cursor.json is damaged", async () => {
    await writeFile(join(dir, "cursor.json"), '{"segment":"x"}');
    await expect(open()).rejects.toThrow(/unreadable cursor\.json/);
    // The failed open released the lock.
    await rm(join(dir, "cursor.json"));
    await (await open()).close();
  });
});
