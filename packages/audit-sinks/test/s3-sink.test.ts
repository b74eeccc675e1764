import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import type { AuditRecord } from "@openrtc/core/audit";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { importClientS3 } from "../src/s3/peer.ts";
import { S3FlushTimeoutError, S3SpoolFullError, s3AuditLineEntries, s3AuditLines, s3Sink } from "../src/s3/index.ts";
import type { S3Sink, S3SinkOptions, S3SinkStats } from "../src/s3/index.ts";
import {
  BUCKET,
  clientConfig,
  collectLines,
  eventually,
  fakeRecords,
  freePort,
  s3Client,
  startHungServer,
  startRecordingProxy,
  startS3,
  tempDir,
} from "./s3-helpers.ts";
import type { S3Server } from "./s3-helpers.ts";

let spool: Awaited<ReturnType<typeof tempDir>>;
const cleanups: (() => Promise<unknown>)[] = [];

beforeEach(async () => {
  spool = await tempDir("s3-sink");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await spool.remove();
});

async function server(port = 0): Promise<S3Server> {
  const started = await startS3(port);
  cleanups.push(() => started.stop());
  return started;
}

async function sink(port: number, options: Partial<S3SinkOptions> = {}): Promise<S3Sink> {
  const created = await s3Sink({
    bucket: BUCKET,
    prefix: "audit/prod",
    spoolDir: spool.path,
    clientConfig: clientConfig(port),
    requestTimeoutMs: 500,
    retry: { initialDelayMs: 10, maxDelayMs: 100 },
    batch: { maxDelayMs: 60_000 },
    closeTimeoutMs: 200,
    ...options,
  });
  cleanups.push(() => created.close());
  return created;
}

const lines = (records: readonly AuditRecord[]) => records.map((record) => JSON.stringify(record));

describe("s3Sink batching and key layout", () => {
  it("writes JSONL objects keyed <prefix>/<YYYY>/<MM>/<DD>/<origin>/<seqStart>-<seqEnd>.jsonl", async () => {
    const s3 = await server();
    const out = await sink(s3.port, { batch: { maxRecords: 3, maxDelayMs: 60_000 } });
    const a = fakeRecords(1, 7, "host-a-1", Date.UTC(2026, 10, 22, 12) / 1000);
    const b = fakeRecords(1, 2, "host b/2", Date.UTC(2026, 10, 22, 12) / 1000);
    await out.write(a);
    await out.write(b);
    await out.flush();

    const client = s3Client(s3.port);
    cleanups.push(async () => client.destroy());
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    const pad = (n: number) => String(n).padStart(20, "0");
    // Sorted here: fauxqs lists in insertion order, S3 in key order.
    expect(listed.Contents?.map((object) => object.Key).sort()).toEqual([
      `audit/prod/2026/11/22/host%20b%2F2/${pad(1)}-${pad(2)}.jsonl`,
      `audit/prod/2026/11/22/host-a-1/${pad(1)}-${pad(3)}.jsonl`,
      `audit/prod/2026/11/22/host-a-1/${pad(4)}-${pad(6)}.jsonl`,
      `audit/prod/2026/11/22/host-a-1/${pad(7)}-${pad(7)}.jsonl`,
    ]);
    const second = await client.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: `audit/prod/2026/11/22/host-a-1/${pad(4)}-${pad(6)}.jsonl` }),
    );
    expect(await second.Body?.transformToString()).toBe(`${lines(a.slice(3, 6)).join("\n")}\n`);
    expect(second.ContentType).toBe("application/x-ndjson");
    expect(out.stats()).toMatchObject({ spooledRecords: 0, spooledBytes: 0, uploadedObjects: 4, uploadedRecords: 9 });
  });

  it("starts a new object at UTC midnight", async () => {
    const s3 = await server();
    const out = await sink(s3.port);
    const midnight = Date.UTC(2026, 10, 23) / 1000;
    const records = [...fakeRecords(1, 2, "o", midnight - 1), ...fakeRecords(3, 4, "o", midnight)];
    await out.write(records);
    await out.flush();
    const client = s3Client(s3.port);
    cleanups.push(async () => client.destroy());
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "audit/prod/" }));
    expect(listed.Contents?.map((object) => object.Key?.split("/").slice(2, 5).join("/")).sort()).toEqual([
      "2026/11/22",
      "2026/11/23",
    ]);
    expect(await collectLines(s3.port, "audit/prod")).toEqual(lines(records));
  });

  it("uploads on its own after batch.maxDelayMs, without a flush", async () => {
    const s3 = await server();
    const out = await sink(s3.port, { batch: { maxDelayMs: 20 } });
    await out.write(fakeRecords(1, 3));
    await eventually(() => out.stats().uploadedObjects === 1);
    expect(await collectLines(s3.port, "audit/prod")).toEqual(lines(fakeRecords(1, 3)));
  });

  it("uploads once maxRecords are spooled, without a flush", async () => {
    const s3 = await server();
    const out = await sink(s3.port, { batch: { maxRecords: 2, maxDelayMs: 60_000 } });
    await out.write(fakeRecords(1, 5));
    await eventually(() => out.stats().uploadedRecords === 4);
    expect(out.stats().spooledRecords).toBe(1);
  });
});

describe("s3Sink during an outage", () => {
  it("server down (connection refused): write returns once spooled; after recovery everything arrives in order", async () => {
    const port = await freePort();
    const seen: S3SinkStats[] = [];
    let now = 1_000;
    const out = await sink(port, { onBacklog: (stats) => seen.push(stats), clock: () => now });
    const records = fakeRecords(1, 30);
    for (let start = 0; start < 30; start += 10) await out.write(records.slice(start, start + 10));
    now = 1_042;
    expect(out.stats()).toMatchObject({ spooledRecords: 30, uploadedObjects: 0, oldestSpooledAgeSeconds: 42 });

    await expect(out.flush(100)).rejects.toThrow(S3FlushTimeoutError);
    await expect(out.flush(100)).rejects.toThrow(/30 records \(\d+ bytes\) are still spooled in .*last error: .*ECONNREFUSED/);
    expect(out.stats().consecutiveFailures).toBeGreaterThan(0);
    expect(seen.some((stats) => stats.spooledRecords === 30 && stats.lastError !== null)).toBe(true);

    await server(port);
    await out.flush();
    expect(await collectLines(port, "audit/prod")).toEqual(lines(records));
    expect(out.stats()).toMatchObject({ spooledRecords: 0, lastError: null, consecutiveFailures: 0, oldestSpooledAgeSeconds: 0 });
  });

  it("hung server (accepts, never answers): requests time out, write never waits, nothing is lost", async () => {
    const hung = await startHungServer();
    let hungOpen = true;
    cleanups.push(() => (hungOpen ? hung.close() : Promise.resolve()));
    const out = await sink(hung.port, { requestTimeoutMs: 200 });
    const records = fakeRecords(1, 20);
    await out.write(records.slice(0, 10));
    await out.flush(50).catch(() => {});
    await eventually(() => out.stats().consecutiveFailures >= 2);
    // The uploader is stuck retrying; the caller is not.
    await out.write(records.slice(10));
    expect(out.stats().spooledRecords).toBe(20);
    expect(out.stats().lastError).toMatch(
      /PutObject s3:\/\/audit\/audit\/prod\/.* failed: no response within requestTimeoutMs=200/,
    );
    expect(hung.connections()).toBeGreaterThan(0);

    await hung.close();
    hungOpen = false;
    await server(hung.port);
    await out.flush();
    expect(await collectLines(hung.port, "audit/prod")).toEqual(lines(records));
  });

  it("spool full: write rejects with a clear error and stores nothing of that batch", async () => {
    const port = await freePort();
    const out = await sink(port, { spoolMaxBytes: 2_000 });
    const accepted: AuditRecord[] = [];
    let rejected: unknown;
    for (let seq = 1; rejected === undefined; seq += 2) {
      const batch = fakeRecords(seq, seq + 1);
      try {
        await out.write(batch);
        accepted.push(...batch);
      } catch (error) {
        rejected = error;
        // The audit log keeps the batch and retries it later.
        await eventually(() => out.stats().lastError !== null);
        await expect(out.write(batch)).rejects.toThrow(/last error: .*ECONNREFUSED/);
        await server(port);
        await out.flush();
        await out.write(batch);
        accepted.push(...batch);
      }
    }
    expect(rejected).toBeInstanceOf(S3SpoolFullError);
    expect((rejected as Error).message).toMatch(
      /spool is full: \d+ records \(\d+ bytes\) wait in .* would pass spoolMaxBytes=2000.*raise spoolMaxBytes/,
    );
    await out.flush();
    expect(await collectLines(port, "audit/prod")).toEqual(lines(accepted));
  });

  it("close() with S3 down returns after closeTimeoutMs and keeps the spool; a new sink delivers it", async () => {
    const port = await freePort();
    const first = await sink(port);
    await first.write(fakeRecords(1, 5));
    await first.close();
    await expect(first.write(fakeRecords(6, 6))).rejects.toThrow(/is closed/);

    await server(port);
    const second = await sink(port);
    expect(second.stats().spooledRecords).toBe(5);
    expect(second.stats().oldestSpooledAgeSeconds).toBeGreaterThan(0);
    await second.write(fakeRecords(6, 8));
    await second.flush();
    expect(await collectLines(port, "audit/prod")).toEqual(lines(fakeRecords(1, 8)));
  });

  it("close() abandons an upload hanging on a silent server (the spool keeps its records)", async () => {
    const hung = await startHungServer();
    cleanups.push(() => hung.close());
    // A request timeout longer than the test's: only close() aborting the request lets this pass.
    const out = await sink(hung.port, { requestTimeoutMs: 120_000, clientConfig: clientConfig(hung.port, 120_000) });
    await out.write(fakeRecords(1, 3));
    await out.flush(1).catch(() => {});
    await eventually(() => hung.connections() > 0);
    await out.close();
    expect(out.stats()).toMatchObject({ spooledRecords: 3, uploadedObjects: 0 });
  });
});

describe("s3Sink local disk trouble", () => {
  it("an unwritable cursor stops uploads (nothing is sent unannounced) until it is fixed", async () => {
    const s3 = await server();
    const out = await sink(s3.port);
    const cursor = join(spool.path, "cursor.json");
    await mkdir(join(cursor, "blocker"), { recursive: true });
    await out.write(fakeRecords(1, 3));
    await expect(out.flush(300)).rejects.toThrow(S3FlushTimeoutError);
    expect(out.stats().lastError).toMatch(/cursor\.json/);
    expect(out.stats().uploadedObjects).toBe(0);
    await rm(cursor, { recursive: true });
    await out.flush();
    expect(await collectLines(s3.port, "audit/prod")).toEqual(lines(fakeRecords(1, 3)));
  });
});

describe("s3Sink requests", () => {
  it("sends Object Lock retention and an integrity checksum on PutObject", async () => {
    const s3 = await server();
    const proxy = await startRecordingProxy(s3.port);
    cleanups.push(() => proxy.close());
    const now = 1_763_800_000;
    const out = await sink(proxy.port, { objectLock: { mode: "COMPLIANCE", retainDays: 30 }, clock: () => now });
    await out.write(fakeRecords(1, 2));
    await out.flush();
    const put = proxy.requests.find((request) => request.method === "PUT");
    expect(put?.headers["x-amz-object-lock-mode"]).toBe("COMPLIANCE");
    expect(Date.parse(String(put?.headers["x-amz-object-lock-retain-until-date"]))).toBe((now + 30 * 86_400) * 1000);
    expect(put?.headers["x-amz-checksum-crc32"]).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(put?.headers["content-type"]).toBe("application/x-ndjson");
  });

  it("every upload is a conditional put: PutObject carries If-None-Match: * (the local server ignores it, so look at the wire)", async () => {
    const s3 = await server();
    const proxy = await startRecordingProxy(s3.port);
    cleanups.push(() => proxy.close());
    const out = await sink(proxy.port, { batch: { maxRecords: 2, maxDelayMs: 60_000 } });
    await out.write(fakeRecords(1, 7));
    await out.flush();
    // Another origin: still conditional.
    await out.write(fakeRecords(1, 3, "host-b-1"));
    await out.flush();
    const puts = proxy.requests.filter((request) => request.method === "PUT");
    expect(out.stats().uploadedObjects).toBe(6);
    expect(puts).toHaveLength(6);
    for (const put of puts) expect(put.headers["if-none-match"]).toBe("*");
    expect(await collectLines(s3.port, "audit/prod")).toHaveLength(10);
  });

  it("a 412 to the conditional put (another writer took the key between the check and the put) is a collision: kept, reported, never overwritten", async () => {
    const s3 = await server();
    const direct = s3Client(s3.port);
    let raced = 0;
    // Stands in front of S3 and, on the first conditional PUT, lets a rival writer store other
    // bytes under that key first, then answers as S3 does when If-None-Match: * fails.
    const front = http.createServer((req, res) => {
      if (req.method === "PUT" && req.headers["if-none-match"] === "*" && raced === 0) {
        raced++;
        req.resume();
        const key = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname.split("/").slice(2).join("/"));
        void direct.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "rival\n" })).then(() => {
          res.writeHead(412, { "content-type": "application/xml" });
          res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>');
        });
        return;
      }
      const upstream = http.request({ host: "127.0.0.1", port: s3.port, method: req.method, path: req.url, headers: req.headers }, (response) => {
        res.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(res);
      });
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
    cleanups.push(async () => {
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    });
    const out = await sink((front.address() as AddressInfo).port);
    await out.write(fakeRecords(1, 3));
    await out.flush();
    expect(raced).toBe(1);
    expect(out.stats()).toMatchObject({ collisions: 1, lastError: expect.stringContaining("collision") });
    expect(await collectLines(s3.port, "audit/prod")).toEqual(["rival"]);
    const kept = await readdir(join(spool.path, "collisions"));
    expect(kept).toHaveLength(1);
    expect(await readFile(join(spool.path, "collisions", kept[0]!), "utf8")).toBe(`${lines(fakeRecords(1, 3)).join("\n")}\n`);
  });

  it("sends no Object Lock headers unless asked", async () => {
    const s3 = await server();
    const proxy = await startRecordingProxy(s3.port);
    cleanups.push(() => proxy.close());
    const out = await sink(proxy.port);
    await out.write(fakeRecords(1, 1));
    await out.flush();
    const put = proxy.requests.find((request) => request.method === "PUT");
    expect(put?.headers).not.toHaveProperty("x-amz-object-lock-mode");
    expect(put?.headers).not.toHaveProperty("x-amz-object-lock-retain-until-date");
  });

  it("stores a batch sent again (an abandoned write retried) once, but never skips a new record", async () => {
    const s3 = await server();
    const out = await sink(s3.port);
    const records = fakeRecords(1, 4);
    await Promise.all([out.write(records.slice(0, 3)), out.write(records.slice(0, 3))]);
    await out.write(records);
    // Same origin and seq but another hash: a new log reusing the origin. Kept.
    const reused = { ...records[0]!, hash: "f".repeat(64) };
    await out.write([reused]);
    await out.flush();
    expect(await collectLines(s3.port, "audit/prod")).toEqual(lines([...records, reused]));
  });

  it("flush resolves at once with nothing spooled", async () => {
    const out = await sink(await freePort());
    await expect(out.flush(1)).resolves.toBeUndefined();
    await out.write([]);
    expect(out.stats().spooledRecords).toBe(0);
  });
});

describe("s3AuditLines", () => {
  it("reads every page in key order, skipping foreign keys, optionally one origin", async () => {
    const s3 = await server();
    const out = await sink(s3.port, { batch: { maxRecords: 1, maxDelayMs: 60_000 } });
    const a = fakeRecords(1, 5, "a");
    const b = fakeRecords(1, 2, "b");
    await out.write(a);
    await out.write(b);
    await out.flush();
    const client = s3Client(s3.port);
    cleanups.push(async () => client.destroy());
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: "audit/prod/README.txt", Body: "not audit" }));
    const read = async (origin?: string) => {
      const out: string[] = [];
      for await (const line of s3AuditLines({
        client,
        bucket: BUCKET,
        prefix: "/audit/prod/",
        pageSize: 2,
        ...(origin !== undefined && { origin }),
      })) {
        out.push(line);
      }
      return out;
    };
    expect(await read()).toEqual(lines([...a, ...b]));
    expect(await read("b")).toEqual(lines(b));
    const entries = [];
    for await (const entry of s3AuditLineEntries({ client, bucket: BUCKET, prefix: "audit/prod", origin: "b" })) entries.push(entry);
    expect(entries.map((entry) => [entry.key.split("/").at(-1), entry.lineNo])).toEqual([
      [`${"1".padStart(20, "0")}-${"1".padStart(20, "0")}.jsonl`, 1],
      [`${"2".padStart(20, "0")}-${"2".padStart(20, "0")}.jsonl`, 1],
    ]);
  });

  it("builds its own client from clientConfig", async () => {
    const s3 = await server();
    const out = await sink(s3.port);
    await out.write(fakeRecords(1, 2));
    await out.flush();
    const read: string[] = [];
    for await (const line of s3AuditLines({ bucket: BUCKET, prefix: "audit/prod", clientConfig: clientConfig(s3.port) })) {
      read.push(line);
    }
    expect(read).toEqual(lines(fakeRecords(1, 2)));
  });
});

describe("s3Sink bad input", () => {
  it("names what is missing or wrong in the options", async () => {
    const base = { bucket: BUCKET, spoolDir: spool.path };
    await expect(s3Sink({ ...base, spoolDir: "" })).rejects.toThrow(/spoolDir is required: a directory on persistent storage/);
    await expect(s3Sink({ ...base, bucket: undefined as never })).rejects.toThrow(/bucket is required/);
    await expect(s3Sink({ ...base, spoolMaxBytes: -1 })).rejects.toThrow(/spoolMaxBytes must be a positive number, got -1/);
    await expect(s3Sink({ ...base, batch: { maxDelayMs: Number.NaN } })).rejects.toThrow(/batch.maxDelayMs must be a positive/);
    await expect(s3Sink({ ...base, objectLock: { mode: "STRICT" as never, retainDays: 1 } })).rejects.toThrow(
      /objectLock.mode must be "GOVERNANCE" or "COMPLIANCE"/,
    );
    await expect(s3Sink({ ...base, objectLock: { mode: "GOVERNANCE", retainDays: 0 } })).rejects.toThrow(
      /objectLock.retainDays must be a positive number/,
    );
    await expect(s3AuditLines({ bucket: "" }).next()).rejects.toThrow(/bucket is required/);
  });

  it("says so when no AWS region is configured", async () => {
    const saved = { region: process.env.AWS_REGION, defaultRegion: process.env.AWS_DEFAULT_REGION, config: process.env.AWS_CONFIG_FILE };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    process.env.AWS_CONFIG_FILE = join(spool.path, "no-such-aws-config");
    try {
      const { region: _region, ...noRegion } = clientConfig(await freePort());
      await expect(s3Sink({ bucket: BUCKET, spoolDir: spool.path, clientConfig: noRegion })).rejects.toThrow(
        /no AWS region: pass clientConfig.region .* or set AWS_REGION/,
      );
      // The failed sink did not keep the spool directory locked.
      await (await sink(await freePort())).close();
    } finally {
      for (const [name, value] of [["AWS_REGION", saved.region], ["AWS_DEFAULT_REGION", saved.defaultRegion], ["AWS_CONFIG_FILE", saved.config]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it("rejects records without seq, timestamp or origin", async () => {
    const out = await sink(await freePort());
    const [good] = fakeRecords(1, 1);
    await expect(out.write([good!, { ...good!, seq: -1 }])).rejects.toThrow(/record 1 has no valid seq \(got -1\)/);
    await expect(out.write([{ ...good!, timestamp: "now" as never }])).rejects.toThrow(/no valid timestamp in Unix seconds/);
    await expect(out.write([{ ...good!, origin: "" }])).rejects.toThrow(/record 0 has no origin/);
    expect(out.stats().spooledRecords).toBe(0);
  });

  it("refuses a spoolDir another open sink uses", async () => {
    const port = await freePort();
    await sink(port);
    await expect(sink(port)).rejects.toThrow(/is in use by process \d+ \(this process\): give each s3Sink its own spoolDir/);
  });

  it("tells the user to install @aws-sdk/client-s3 when it is missing", async () => {
    await expect(importClientS3("@aws-sdk/client-s3-not-installed")).rejects.toThrow(
      /needs the AWS SDK: install @aws-sdk\/client-s3/,
    );
  });
});
