import { PutObjectCommand } from "@aws-sdk/client-s3";
import { AgentPool } from "@openrtc/core";
import { AuditLog } from "@openrtc/core/audit";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { auditObjectKey, s3Sink, verifyS3AuditLog } from "../src/s3/index.ts";
import type { S3Sink, S3SinkOptions } from "../src/s3/index.ts";
import { BUCKET, clientConfig, collectLines, fakeRecords, freePort, s3Client, startHungServer, startRecordingProxy, startS3, tempDir } from "./s3-helpers.ts";
import type { S3Server } from "./s3-helpers.ts";

const ORIGIN = "worker-a";
const PREFIX = "audit/prod";
const DAY = 86_400;
/** 2025-11-22T08:26:40Z */
const T0 = 1_763_800_000;

let dir: Awaited<ReturnType<typeof tempDir>>;
const cleanups: (() => Promise<unknown>)[] = [];
beforeEach(async () => {
  dir = await tempDir("s3-chain-head");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await dir.remove();
});

async function server(): Promise<S3Server> {
  const started = await startS3();
  cleanups.push(() => started.stop());
  return started;
}

async function openSink(port: number, spool: string, options: Partial<S3SinkOptions> = {}): Promise<S3Sink> {
  const sink = await s3Sink({
    bucket: BUCKET,
    prefix: PREFIX,
    spoolDir: join(dir.path, spool),
    clientConfig: clientConfig(port),
    origin: ORIGIN,
    requestTimeoutMs: 500,
    retry: { initialDelayMs: 10, maxDelayMs: 100 },
    batch: { maxRecords: 3, maxDelayMs: 1 },
    closeTimeoutMs: 2_000,
    ...options,
  });
  cleanups.push(() => sink.close());
  return sink;
}

/** What `openrtc audit verify s3://audit/audit/prod --endpoint …` checks. */
async function verify(port: number) {
  const client = s3Client(port);
  try {
    return await verifyS3AuditLog(`s3://${BUCKET}/${PREFIX}`, { client });
  } finally {
    client.destroy();
  }
}

describe("s3Sink chainHead(origin): a fixed origin continues its chain from S3", () => {
  it("three restarts of a pool with a fixed auditOrigin, across UTC days and another origin's newer day, make one chain", async () => {
    const s3 = await server();
    let last = 0;
    // Run 3 gets a fresh spoolDir (a new machine): only S3 can tell it where the chain stands.
    const runs = [
      { spool: "spool", at: T0 },
      { spool: "spool", at: T0 + DAY },
      { spool: "spool-new-node", at: T0 + 3 * DAY },
    ];
    for (const [index, run] of runs.entries()) {
      if (index === 2) {
        // The newest day in the bucket holds only another origin: the lookup must look further back.
        const other = await openSink(s3.port, "spool-other", { origin: "worker-b" });
        const log = new AuditLog({ origin: "worker-b", sinks: [other], clock: () => T0 + 4 * DAY });
        for (let i = 0; i < 4; i++) log.emit("deployment.started", { i });
        await log.close({ timeoutMs: 5_000 });
      }
      const sink = await openSink(s3.port, run.spool);
      expect(sink.stats().chainHeadError).toBeNull();
      expect(sink.chainHead(ORIGIN)?.seq ?? 0).toBe(last);
      const pool = new AgentPool({ deploymentVersion: "v1.0.0", auditOrigin: ORIGIN, auditSinks: [sink], clock: () => run.at });
      expect(pool.auditLog.seq).toBe(last);
      for (let i = 0; i < 7; i++) pool.auditLog.emit("deployment.started", { target: `run-${index}`, i });
      await pool.close({ auditFlushTimeoutMs: 10_000 });
      expect(sink.stats()).toMatchObject({ spooledRecords: 0, collisions: 0 });
      expect(pool.auditLog.seq).toBeGreaterThan(last + 6);
      last = pool.auditLog.seq;
    }
    const mine = (await collectLines(s3.port, PREFIX)).map((line) => JSON.parse(line)).filter((r) => r.origin === ORIGIN);
    expect(mine.map((r) => r.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    expect(await verify(s3.port)).toMatchObject({ ok: true, records: last + 4, origins: 2 });
  });

  it("records spooled but not yet uploaded win over S3 (and S3 is not even asked)", async () => {
    const s3 = await server();
    const first = await startRecordingProxy(s3.port);
    cleanups.push(() => first.close());
    const sink = await openSink(first.port, "spool", { closeTimeoutMs: 200 });
    const log = new AuditLog({ origin: ORIGIN, sinks: [sink], clock: () => T0 });
    for (let i = 0; i < 5; i++) log.emit("deployment.started", { i });
    await log.flush({ timeoutMs: 5_000 });
    await sink.flush();
    // S3 becomes unreachable: 6..8 stay in the spool when the process stops.
    await first.close();
    for (let i = 5; i < 8; i++) log.emit("deployment.started", { i });
    // The log's close spends its time on the sink's flush (S3 is gone); the sink's close then ends on its own.
    await log.close({ timeoutMs: 500 });
    await sink.close();
    expect(sink.stats().spooledRecords).toBe(3);
    expect((await collectLines(s3.port, PREFIX)).map((line) => JSON.parse(line).seq)).toEqual([1, 2, 3, 4, 5]);

    const second = await startRecordingProxy(s3.port);
    cleanups.push(() => second.close());
    const restarted = await openSink(second.port, "spool");
    expect(second.requests.filter((request) => request.method === "GET" && request.url.includes("list-type=2"))).toEqual([]);
    const resumed = new AuditLog({ origin: ORIGIN, sinks: [restarted], clock: () => T0 });
    expect(resumed.seq).toBe(8);
    resumed.emit("deployment.completed");
    await resumed.close({ timeoutMs: 5_000 });
    expect((await collectLines(s3.port, PREFIX)).map((line) => JSON.parse(line).seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(await verify(s3.port)).toMatchObject({ ok: true, records: 9 });
  });

  it("S3 down at startup (refused or hung): s3Sink() resolves within chainHeadTimeoutMs, chainHead throws, the log starts anyway", async () => {
    const refused = await openSink(await freePort(), "spool-refused", { chainHeadTimeoutMs: 2_000 });
    expect(refused.stats().chainHeadError).toMatch(/^looking it up failed: /);
    expect(() => refused.chainHead(ORIGIN)).toThrow(/cannot tell where origin "worker-a" stands in s3:\/\/audit\/audit\/prod\/: looking it up failed/);

    const hung = await startHungServer();
    cleanups.push(() => hung.close());
    const started = performance.now();
    const sink = await openSink(hung.port, "spool-hung", { chainHeadTimeoutMs: 300, requestTimeoutMs: 5_000 });
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(sink.stats().chainHeadError).toMatch(/no answer within chainHeadTimeoutMs=300/);
    expect(() => sink.chainHead(ORIGIN)).toThrow(/chainHeadTimeoutMs=300/);
    // As documented in AuditLog: a sink that cannot tell is skipped; with no other sink the chain starts at seq 1.
    const pool = new AgentPool({ deploymentVersion: "v1.0.0", auditOrigin: ORIGIN, auditSinks: [sink], clock: () => T0 });
    expect(pool.auditLog.seq).toBe(0);
    expect(pool.auditLog.emit("deployment.started").seq).toBe(1);
    await pool.auditLog.flush({ timeoutMs: 2_000 });
    // Acknowledged by the spool; once records of the origin are spooled, they are the head.
    expect(sink.stats().spooledRecords).toBe(1);
    expect(sink.chainHead(ORIGIN)?.seq).toBe(1);
    await pool.close({ auditFlushTimeoutMs: 500 });
  });

  it("reads every page of keys (days and objects) to find the highest seqEnd", async () => {
    const s3 = await server();
    const writer = await openSink(s3.port, "spool-writer", { batch: { maxRecords: 1, maxDelayMs: 1 } });
    // 3 days of worker-a (the last one with 7 one-record objects), plus other origins in between.
    await writer.write(fakeRecords(1, 2, ORIGIN, T0));
    await writer.write(fakeRecords(1, 3, "worker-0", T0 + DAY));
    await writer.write(fakeRecords(3, 4, ORIGIN, T0 + DAY));
    await writer.write(fakeRecords(5, 11, ORIGIN, T0 + 2 * DAY));
    await writer.write(fakeRecords(1, 3, "worker-z", T0 + 2 * DAY));
    await writer.flush();
    await writer.close();

    const proxy = await startRecordingProxy(s3.port);
    cleanups.push(() => proxy.close());
    const sink = await openSink(proxy.port, "spool-reader", { listPageSize: 2 });
    expect(sink.chainHead(ORIGIN)).toEqual({ origin: ORIGIN, seq: 11, hash: fakeRecords(11, 11)[0]!.hash });
    const lists = proxy.requests.filter((request) => request.url.includes("list-type=2"));
    expect(lists.filter((request) => request.url.includes("continuation-token=")).length).toBeGreaterThanOrEqual(4);
    expect(lists.every((request) => /max-keys=2(&|$)/.test(request.url))).toBe(true);
  });

  it("does not guess: a last object whose last line is not the record its key names is a failed lookup", async () => {
    const s3 = await server();
    const client = s3Client(s3.port);
    cleanups.push(async () => client.destroy());
    const [record] = fakeRecords(4, 4, ORIGIN, T0);
    const key = auditObjectKey(PREFIX, { origin: ORIGIN, firstTimestamp: T0, seqStart: 4, seqEnd: 5 });
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `${JSON.stringify(record)}\n` }));
    const sink = await openSink(s3.port, "spool");
    expect(sink.stats().chainHeadError).toMatch(/is not the record its key names \(origin "worker-a", seq 5\)/);
    expect(() => sink.chainHead(ORIGIN)).toThrow(/cannot tell/);
    // Another origin was never looked up: the sink says so instead of answering "no records".
    expect(() => sink.chainHead("worker-b")).toThrow(/pass origin: "worker-b" to s3Sink\(\)/);
  });

  it("without options.origin answers from the spool only", async () => {
    const s3 = await server();
    const proxy = await startRecordingProxy(s3.port);
    cleanups.push(() => proxy.close());
    const sink = await openSink(proxy.port, "spool", { origin: undefined, batch: { maxDelayMs: 60_000 } });
    expect(proxy.requests).toEqual([]);
    expect(() => sink.chainHead(ORIGIN)).toThrow(/S3 was not searched for it/);
    await sink.write(fakeRecords(1, 3, ORIGIN, T0));
    expect(sink.chainHead(ORIGIN)).toMatchObject({ origin: ORIGIN, seq: 3 });
    await sink.flush();
    // Uploaded (the spool file may be gone): still known to this instance.
    expect(sink.chainHead(ORIGIN)).toMatchObject({ origin: ORIGIN, seq: 3 });
  });
});
