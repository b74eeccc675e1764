import { AuditLog, verifyAuditLog } from "@openrtc/core/audit";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseS3Url, s3AuditLines, s3Sink, verifyS3AuditLog } from "../src/s3/index.ts";
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

describe("verifyS3AuditLog (behind `openrtc audit verify s3://BUCKET/PREFIX`)", () => {
  it("verifies a log in S3 and names the object and line of the first bad record", async () => {
    const s3 = await startS3();
    cleanups.push(() => s3.stop());
    const sink = await s3Sink({
      bucket: BUCKET,
      prefix: "logs/prod",
      spoolDir: spool.path,
      clientConfig: clientConfig(s3.port),
      batch: { maxRecords: 10, maxDelayMs: 60_000 },
    });
    const log = new AuditLog({ sinks: [sink] });
    for (let i = 0; i < 25; i++) log.emit("deployment.started", { target: `t${i}` });
    await log.close({ timeoutMs: 10_000 });

    const endpoint = `http://127.0.0.1:${s3.port}`;
    const auth = { clientConfig: { region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } } };
    expect(await verifyS3AuditLog(`s3://${BUCKET}/logs/prod/`, { endpoint, ...auth })).toMatchObject({ ok: true, records: 25 });
    expect(await verifyS3AuditLog(`s3://${BUCKET}/elsewhere`, { endpoint, ...auth })).toMatchObject({ ok: true, records: 0 });

    // Edit one record in the second object (seq 11..20): line 3 is seq 13.
    const client = s3Client(s3.port);
    cleanups.push(async () => client.destroy());
    const key = (await client.send(new ListObjectsV2Command({ Bucket: BUCKET }))).Contents!.map((o) => o.Key!).sort()[1]!;
    const text = await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: text.replace('"target":"t12"', '"target":"tX"') }));
    expect(await verifyS3AuditLog(`s3://${BUCKET}/logs/prod`, { client })).toMatchObject({
      ok: false,
      fault: "edited",
      file: key,
      line: 3,
      seq: 13,
    });
  });

  it("rejects what is not an s3:// location", async () => {
    expect(parseS3Url("s3://bucket")).toEqual({ bucket: "bucket", prefix: "" });
    expect(parseS3Url("s3://bucket//a/b/")).toEqual({ bucket: "bucket", prefix: "a/b" });
    await expect(verifyS3AuditLog("https://bucket/x")).rejects.toThrow(/is not an S3 location: expected s3:\/\/BUCKET\[\/PREFIX\]/);
    await expect(verifyS3AuditLog("s3:///x")).rejects.toThrow(/is not an S3 location/);
  });
});
