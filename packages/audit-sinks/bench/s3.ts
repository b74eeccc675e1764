/**
 * S3 sink throughput against a local S3-protocol server (fauxqs, in memory, 127.0.0.1), with a
 * real AuditLog producing hash-chained records. Goals:
 *
 * - emit → in S3: N records emitted, timed until `log.flush()` resolves (each record hashed,
 *   spooled with fdatasync, uploaded). Goal ≥ 5,000 records/s: the AuditLog's default per-sink
 *   queue (10,000) drains in 2 s.
 * - emit → acknowledged while S3 hangs (accepts connections, never answers): the spool keeps
 *   taking records. Goal ≥ 1.0× the healthy emit → in S3 rate (an outage must not slow the log).
 * - backlog drain after recovery: the N records spooled during the outage, timed until uploaded.
 *   Goal ≥ 5,000 records/s.
 */
import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isMainModule } from "@openrtc/core";
import { AuditLog } from "@openrtc/core/audit";
import { startFauxqs } from "fauxqs";
import { s3Sink } from "../src/s3/index.ts";
import type { S3SinkOptions } from "../src/s3/index.ts";
import type { BenchRow } from "./bench-row.ts";

const RECORDS = Number(process.env.BENCH_S3_RECORDS ?? 50_000);
const BUCKET = "bench";

function config(port: number): NonNullable<S3SinkOptions["clientConfig"]> {
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
  };
}

function emitAll(log: AuditLog): void {
  for (let i = 0; i < RECORDS; i++) {
    log.emit("worker.rejected", { target: `job-${i}`, reason: "membership", tenant: `t${i % 50}` });
  }
}

export async function benchS3(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const work = await mkdtemp(join(tmpdir(), "bench-s3-"));
  const server = await startFauxqs({ port: 0, logger: false });
  server.createBucket(BUCKET);
  try {
    // Healthy: emit → uploaded.
    {
      const sink = await s3Sink({ bucket: BUCKET, prefix: "healthy", spoolDir: join(work, "healthy"), clientConfig: config(server.port) });
      const log = new AuditLog({ sinks: [sink], maxQueue: RECORDS, version: "bench" });
      const started = performance.now();
      emitAll(log);
      const result = await log.flush({ timeoutMs: 300_000 });
      const seconds = (performance.now() - started) / 1000;
      const stats = sink.stats();
      if (!result.ok || stats.spooledRecords !== 0 || stats.uploadedRecords !== RECORDS) {
        throw new Error(`bench s3: not everything was uploaded: ${JSON.stringify({ result, stats })}`);
      }
      rows.push({
        name: `s3 sink emit → in S3 (${RECORDS.toLocaleString("en-US")} records, ${stats.uploadedObjects} objects)`,
        value: RECORDS / seconds,
        unit: "records/s",
        goal: { value: 5_000, higherIsBetter: true },
      });
      await log.close();
    }

    // Outage: a server that accepts connections and never answers; then recovery on the same port.
    {
      const sockets = new Set<net.Socket>();
      const hung = net.createServer((socket) => {
        sockets.add(socket);
        socket.on("error", () => {});
      });
      await new Promise<void>((resolve) => hung.listen(0, "127.0.0.1", resolve));
      const port = (hung.address() as net.AddressInfo).port;
      const sink = await s3Sink({
        bucket: BUCKET,
        prefix: "outage",
        spoolDir: join(work, "outage"),
        clientConfig: config(port),
        requestTimeoutMs: 2_000,
        retry: { initialDelayMs: 50, maxDelayMs: 200 },
      });
      const log = new AuditLog({ sinks: [sink], maxQueue: RECORDS, version: "bench" });
      const started = performance.now();
      emitAll(log);
      // Delivered to the sink = acknowledged by the spool; the sink's own flush (upload) is not awaited.
      while ((log.stats().sinks[0]?.delivered ?? 0) < RECORDS) await new Promise((resolve) => setTimeout(resolve, 1));
      const seconds = (performance.now() - started) / 1000;
      const healthy = rows[0]!.value;
      rows.push({
        name: "s3 sink emit → acknowledged while S3 hangs",
        value: RECORDS / seconds,
        unit: "records/s",
        goal: { value: healthy, higherIsBetter: true, label: "≥ 1.0× healthy emit → in S3" },
        note: `${sink.stats().spooledRecords.toLocaleString("en-US")} spooled, ${sink.stats().consecutiveFailures} failed uploads`,
      });

      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => hung.close(() => resolve()));
      const recovered = await startFauxqs({ port, logger: false });
      recovered.createBucket(BUCKET);
      try {
        const drainStarted = performance.now();
        await sink.flush(300_000);
        const drainSeconds = (performance.now() - drainStarted) / 1000;
        rows.push({
          name: "s3 sink backlog drain after recovery",
          value: RECORDS / drainSeconds,
          unit: "records/s",
          goal: { value: 5_000, higherIsBetter: true },
          note: `includes up to one backoff wait (≤ 200 ms) and one ${2_000} ms request timeout`,
        });
        await log.close();
      } finally {
        await recovered.stop();
      }
    }
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
  return rows;
}

// Run alone: `pnpm exec tsx --conditions=@openrtc/source bench/s3.ts`
if (isMainModule(import.meta.url)) {
  const { formatTable } = await import("./bench-row.ts");
  console.log(formatTable(await benchS3()));
}
