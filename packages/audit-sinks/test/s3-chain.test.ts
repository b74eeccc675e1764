import { AuditLog, verifyAuditLog } from "@openrtc/core";
import { DeleteObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { s3AuditLines, s3Sink } from "../src/s3/index.ts";
import { BUCKET, clientConfig, freePort, s3Client, startS3, tempDir } from "./s3-helpers.ts";

let spool: Awaited<ReturnType<typeof tempDir>>;
const cleanups: (() => Promise<unknown>)[] = [];
beforeEach(async () => {
  spool = await tempDir("s3-chain");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await spool.remove();
});

describe("AuditLog → s3Sink → verifyAuditLog", () => {
  it("keeps the hash chain intact through an S3 outage, two origins, many objects", async () => {
    const port = await freePort();
    const sink = await s3Sink({
      bucket: BUCKET,
      prefix: "audit",
      spoolDir: spool.path,
      clientConfig: clientConfig(port),
      requestTimeoutMs: 500,
      retry: { initialDelayMs: 10, maxDelayMs: 100 },
      batch: { maxRecords: 64, maxDelayMs: 5 },
    });
    cleanups.push(() => sink.close());
    const logs = [new AuditLog({ sinks: [sink], version: "v1" }), new AuditLog({ sinks: [sink], version: "v1" })];
    cleanups.push(() => Promise.all(logs.map((log) => log.close({ timeoutMs: 1_000 }))));
    for (let i = 0; i < 300; i++) {
      logs[i % 2]!.emit(i % 3 === 0 ? "worker.rejected" : "deployment.started", { target: `job-${i}`, detail: { i } });
    }
    await Promise.all(logs.map((log) => log.flush({ timeoutMs: 200 })));
    // S3 is down: every record is acknowledged by the spool, none uploaded.
    expect(logs.map((log) => log.stats().sinks[0]?.pending)).toEqual([0, 0]);
    expect(sink.stats().spooledRecords).toBe(300);

    const s3 = await startS3(port);
    cleanups.push(() => s3.stop());
    await sink.flush();

    const client = s3Client(port);
    cleanups.push(async () => client.destroy());
    const result = await verifyAuditLog(s3AuditLines({ client, bucket: BUCKET, prefix: "audit" }));
    expect(result).toMatchObject({ ok: true, records: 300, origins: 2 });
    expect(sink.stats().uploadedObjects).toBeGreaterThan(4);

    // The reader is what the verifier trusts for order: a deleted object must show as a gap.
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "audit/" }));
    const keys = (listed.Contents ?? []).map((object) => object.Key!).sort();
    await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: keys[1]! }));
    const tampered = await verifyAuditLog(s3AuditLines({ client, bucket: BUCKET, prefix: "audit" }));
    expect(tampered).toMatchObject({ ok: false, fault: "gap" });
  });
});
