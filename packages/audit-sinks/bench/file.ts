/**
 * Durable, hash-chained file sink vs pino writing to a file, on the same records.
 *
 * - file sink: a real AuditLog (SHA-256 chain per record) emitting N events into fileSink
 *   (group commit, fdatasync before acknowledging), timed until `log.flush()` resolves: every
 *   record hashed, written and on disk.
 * - pino: `pino.destination({ dest, sync: false })` (sonic-boom, no fsync) logging the records
 *   the AuditLog produced, timed until the destination's `flush` callback: written to the OS,
 *   not durable.
 *
 * Goal: the durable sink's records/s ≥ 1.0× pino's async throughput.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditLog } from "@openrtc/core";
import type { AuditRecord } from "@openrtc/core";
import pino from "pino";
import { fileSink } from "../src/file/index.ts";
import type { BenchRow } from "./bench-row.ts";

const RECORDS = Number(process.env.AUDIT_BENCH_RECORDS ?? 200_000);
const ROUNDS = Number(process.env.AUDIT_BENCH_ROUNDS ?? 3);

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

interface FileRun {
  seconds: number;
  records: AuditRecord[];
  syncs: number;
  rotations: number;
}

async function runFileSink(dir: string, options: { maxBatch: number }): Promise<FileRun> {
  const sink = fileSink({ path: join(dir, "audit.jsonl"), rotate: { maxBytes: 64 * 1024 * 1024 } });
  await sink.open();
  const log = new AuditLog({ sinks: [sink], maxQueue: RECORDS + 1, maxBatch: options.maxBatch });
  const records: AuditRecord[] = new Array(RECORDS);
  const started = process.hrtime.bigint();
  for (let i = 0; i < RECORDS; i++) records[i] = log.emit("worker.rejected", fieldsFor(i));
  const result = await log.flush();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (!result.ok) throw new Error(`file sink bench lost records: ${JSON.stringify(result.undelivered)}`);
  const { syncs, rotations } = sink.stats();
  await log.close();
  return { seconds, records, syncs, rotations };
}

async function runPino(dir: string, records: readonly AuditRecord[]): Promise<number> {
  const dest = pino.destination({ dest: join(dir, "pino.log"), sync: false });
  const logger = pino(dest);
  const started = process.hrtime.bigint();
  for (const record of records) logger.info(record);
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

/** Median of ROUNDS runs each (after one warm-up round), reported as records/s. */
export async function benchFile(): Promise<BenchRow[]> {
  const fileRates: number[] = [];
  const pinoRates: number[] = [];
  let lastFile: FileRun | undefined;
  for (let round = 0; round <= ROUNDS; round++) {
    const file = await inTempDir((dir) => runFileSink(dir, { maxBatch: 1_000 }));
    const pinoSeconds = await inTempDir((dir) => runPino(dir, file.records));
    if (round === 0) continue; // warm-up: JIT, page cache, file system metadata
    fileRates.push(RECORDS / file.seconds);
    pinoRates.push(RECORDS / pinoSeconds);
    lastFile = file;
  }
  const filePerSec = median(fileRates);
  const pinoPerSec = median(pinoRates);
  return [
    { name: "pino 10 async to file (no fsync)", value: pinoPerSec, unit: "records/s", note: `${RECORDS.toLocaleString("en-US")} records, median of ${ROUNDS}` },
    {
      name: "file sink via AuditLog (hash chain + fdatasync)",
      value: filePerSec,
      unit: "records/s",
      goal: { value: pinoPerSec, higherIsBetter: true, label: "≥ 1.0× pino async" },
      note: `${lastFile?.syncs ?? 0} fdatasyncs for ${RECORDS.toLocaleString("en-US")} records (maxBatch 1000)`,
    },
  ];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
