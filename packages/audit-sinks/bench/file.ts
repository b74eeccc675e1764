/**
 * Durable, hash-chained file sink vs pino writing to a file, on the same records.
 *
 * - file sink: a real AuditLog (SHA-256 chain per record) emitting N events into fileSink
 *   (group commit, fdatasync before acknowledging), timed until `log.flush()` resolves: every
 *   record hashed, written and on disk.
 * - pino: `pino.destination({ dest, sync: false })` (sonic-boom, no fsync) logging the records
 *   the AuditLog produced, timed until the destination's `flush` callback: handed to the OS,
 *   not durable.
 *
 * Two load shapes, each run the same way for both:
 * - "one burst": all N calls in one synchronous loop, then flush (pino's own bench style);
 * - "bursts of 1,000": 1,000 calls, then a turn of the event loop (setImmediate), and so on:
 *   how events arrive in a running service; I/O overlaps the next burst's work.
 *
 * Goal: the durable sink's records/s ≥ 1.0× pino's async throughput in each shape.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog } from "@openrtc/core/audit";
import type { AuditRecord } from "@openrtc/core/audit";
import pino from "pino";
import { fileSink } from "../src/file/index.ts";
import type { BenchRow } from "./bench-row.ts";

const RECORDS = Number(process.env.AUDIT_BENCH_RECORDS ?? 200_000);
const ROUNDS = Number(process.env.AUDIT_BENCH_ROUNDS ?? 3);
const BURST = 1_000;

type Shape = "one burst" | "bursts of 1,000";

function fieldsFor(i: number): Record<string, unknown> {
  return {
    actor: "deployer@ci",
    target: `job-${i}`,
    result: i % 17 === 0 ? "rejected" : "ok",
    version: "v2026.11.22",
    reason: "draining",
    tenant: `tenant-${i % 50}`,
    room: `room-${i}`,
  };
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Calls `each(i)` for every i, in the given shape. */
async function drive(shape: Shape, each: (i: number) => void): Promise<void> {
  if (shape === "one burst") {
    for (let i = 0; i < RECORDS; i++) each(i);
    return;
  }
  for (let start = 0; start < RECORDS; start += BURST) {
    const end = Math.min(RECORDS, start + BURST);
    for (let i = start; i < end; i++) each(i);
    await yieldToLoop();
  }
}

interface FileRun {
  seconds: number;
  records: AuditRecord[];
  syncs: number;
}

async function runFileSink(dir: string, shape: Shape, maxBatch: number): Promise<FileRun> {
  const sink = fileSink({ path: join(dir, "audit.jsonl"), rotate: { maxBytes: 64 * 1024 * 1024 } });
  await sink.open();
  const log = new AuditLog({ sinks: [sink], maxQueue: RECORDS + 1, maxBatch });
  const records: AuditRecord[] = new Array(RECORDS);
  const started = process.hrtime.bigint();
  await drive(shape, (i) => {
    records[i] = log.emit("worker.rejected", fieldsFor(i));
  });
  const result = await log.flush();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (!result.ok) throw new Error(`file sink bench lost records: ${JSON.stringify(result.undelivered)}`);
  const { syncs } = sink.stats();
  await log.close();
  return { seconds, records, syncs };
}

async function runPino(dir: string, shape: Shape, records: readonly AuditRecord[]): Promise<number> {
  const dest = pino.destination({ dest: join(dir, "pino.log"), sync: false });
  const logger = pino(dest);
  const started = process.hrtime.bigint();
  await drive(shape, (i) => logger.info(records[i]));
  await new Promise<void>((resolve, reject) => dest.flush((error?: Error) => (error ? reject(error) : resolve())));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  dest.end();
  return seconds;
}

async function inTempDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "audit-bench-"));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The AuditLog's default `maxBatch` (records per `write`), and a larger one for bulk loads. */
const CASES: Array<{ shape: Shape; maxBatch: number }> = [
  { shape: "one burst", maxBatch: 1_000 },
  { shape: "bursts of 1,000", maxBatch: 1_000 },
  { shape: "one burst", maxBatch: 10_000 },
];

/**
 * Per case: ROUNDS rounds after one warm-up, each running the file sink then pino back to back
 * (so both meet the same machine load); median records/s of each.
 */
export async function benchFile(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const { shape, maxBatch } of CASES) {
    const fileRates: number[] = [];
    const pinoRates: number[] = [];
    const syncs: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const file = await inTempDir((dir) => runFileSink(dir, shape, maxBatch));
      const pinoSeconds = await inTempDir((dir) => runPino(dir, shape, file.records));
      if (round === 0) continue; // warm-up: JIT, page cache, file system metadata
      fileRates.push(RECORDS / file.seconds);
      pinoRates.push(RECORDS / pinoSeconds);
      syncs.push(file.syncs);
    }
    const pinoPerSec = median(pinoRates);
    const n = RECORDS.toLocaleString("en-US");
    const batch = maxBatch.toLocaleString("en-US");
    rows.push(
      { name: `pino 10 async to file, ${shape}`, value: pinoPerSec, unit: "records/s", note: `${n} records, no fsync, median of ${ROUNDS}` },
      {
        name: `file sink via AuditLog, ${shape}, maxBatch ${batch}`,
        value: median(fileRates),
        unit: "records/s",
        goal: { value: pinoPerSec, higherIsBetter: true, label: "≥ 1.0× pino async" },
        note: `SHA-256 chain + fdatasync; ${median(syncs)} fdatasyncs`,
      },
    );
  }
  return rows;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
