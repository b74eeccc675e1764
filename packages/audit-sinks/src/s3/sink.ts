import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { describeError, type AuditChainHead, type AuditRecord, type AuditSink } from "@openrtc/core/audit";
import { systemClock } from "@openrtc/core";
import { AcceptedRecords } from "./accepted.ts";
import { findS3ChainHead } from "./chain-head.ts";
import { S3FlushTimeoutError, S3SinkError, S3SpoolFullError } from "./errors.ts";
import { auditObjectKey, normalizePrefix } from "./key.ts";
import { loadClientS3 } from "./peer.ts";
import { Spool } from "./spool.ts";
import type { SpoolBatch } from "./spool.ts";

export interface S3SinkOptions {
  bucket: string;
  /** Key prefix, e.g. `"audit/prod"`; see the key layout in key.ts / the README. */
  prefix?: string;
  /** A client you configured. Its own timeouts apply; each request also gets `requestTimeoutMs` as an abort signal. */
  client?: S3Client;
  /** Used to build a client when `client` is not given (region, endpoint, credentials, ...). */
  clientConfig?: S3ClientConfig;
  /**
   * Directory on persistent storage where records wait until uploaded (required: a spool in a
   * temporary directory would not survive the restart it exists for). Created if missing; one sink
   * per directory.
   */
  spoolDir: string;
  /** Bound of the spool (bytes not yet uploaded). When full, `write()` rejects. Default 256 MiB. */
  spoolMaxBytes?: number;
  batch?: {
    /** Default 10,000. */
    maxRecords?: number;
    /** Default 4 MiB; a single larger record still makes an object of its own. */
    maxBytes?: number;
    /** How long a record may wait for more to share its object. Default 10 s. */
    maxDelayMs?: number;
  };
  /** Per request (PutObject, ...). The AWS SDK waits forever on a silent server otherwise. Default 10 s. */
  requestTimeoutMs?: number;
  /** Exponential backoff between failed uploads (with jitter). Defaults 500 ms → 30 s. */
  retry?: { initialDelayMs?: number; maxDelayMs?: number };
  /** Default wait of `flush()` before it reports what remains. Default 30 s. */
  flushTimeoutMs?: number;
  /** How long `close()` tries to upload what is spooled before leaving it for the next start. Default 5 s. */
  closeTimeoutMs?: number;
  /** S3 Object Lock retention set on each object (the bucket must have Object Lock enabled). */
  objectLock?: { mode: "GOVERNANCE" | "COMPLIANCE"; retainDays: number };
  /** Called after every change of the backlog (spooled, uploaded, failed), e.g. to set gauges. */
  onBacklog?: (stats: S3SinkStats) => void;
  /** Sink name used in metrics (`openrtc_audit_sink_errors_total{sink}`). Default `"s3"`. */
  name?: string;
  /** Unix seconds; default the system clock. */
  clock?: () => number;
  /**
   * The fixed origin of the log this sink serves (the pool's `auditOrigin`). When given and the
   * spool holds no record of it, `s3Sink()` looks up where that origin's chain stands in S3
   * before it resolves, so `chainHead(origin)` (which the log calls synchronously when it is
   * built) can answer and a restarted worker continues its chain. Without it `chainHead` answers
   * from the spool only.
   */
  origin?: string;
  /**
   * Bound of that lookup (every listing page and the read of the last object together). When S3
   * fails or does not answer in time, `s3Sink()` still resolves, `chainHead(origin)` throws saying
   * why (the log then skips this sink) and `stats().chainHeadError` keeps the reason. Default 10 s.
   */
  chainHeadTimeoutMs?: number;
  /** Keys per ListObjectsV2 page in that lookup (S3's maximum and default: 1000). */
  listPageSize?: number;
}

export interface S3SinkStats {
  /** Records acknowledged to the caller and not yet in S3. */
  spooledRecords: number;
  spooledBytes: number;
  /** Objects / records uploaded by this sink instance. */
  uploadedObjects: number;
  uploadedRecords: number;
  /** Spool lines that no longer parsed and were moved to `<spoolDir>/quarantine.jsonl`. */
  quarantinedLines: number;
  /**
   * Objects whose key already held different bytes (two writers, or a restart that reused a
   * fixed origin without resuming its chain). Never overwritten: the batch is kept in
   * `<spoolDir>/collisions/` and reported here and in `lastError`.
   */
  collisions: number;
  /** The last upload failure (`null` once an upload succeeds again). */
  lastError: string | null;
  /** Failed uploads since the last success. */
  consecutiveFailures: number;
  /** Age of the oldest record not yet uploaded, seconds (0 when the spool is empty). */
  oldestSpooledAgeSeconds: number;
  /** Why looking up `origin`'s chain head in S3 at startup failed; `null` when it did not (or was not needed). */
  chainHeadError: string | null;
}

export interface S3Sink extends AuditSink {
  readonly spoolDir: string;
  /** Resolves once the batch is durable in the local spool (fsync); uploading happens in the background. */
  write(records: readonly AuditRecord[]): Promise<void>;
  /**
   * Uploads at once (no batching delay, no backoff wait) and resolves when every record spooled
   * before the call is in S3; after `timeoutMs` (default `flushTimeoutMs`) rejects with
   * `S3FlushTimeoutError` saying what remains. Never hangs.
   */
  flush(timeoutMs?: number): Promise<void>;
  /** Tries to upload for up to `closeTimeoutMs`, then stops; anything left stays in the spool for the next sink. */
  close(): Promise<void>;
  stats(): S3SinkStats;
  /**
   * Where `origin`'s chain stands in what this sink holds, synchronously: the last record of it in
   * the local spool (spooled records not yet uploaded are newer than anything in S3) or written by
   * this sink, else the head found in S3 at startup for `options.origin` (undefined when S3 holds
   * no record of it). Throws when it cannot tell: the S3 lookup failed or timed out, or `origin`
   * is not the `options.origin` that was looked up. The AuditLog skips a sink that throws.
   */
  chainHead(origin: string): AuditChainHead | undefined;
}

const MIB = 1024 * 1024;

/**
 * An audit sink writing batches of records as JSONL objects to S3. `write()` acknowledges once
 * records are in a local durable spool, so an S3 outage never blocks the audit log and loses
 * nothing: uploads are retried with backoff, in order, and a new sink on the same `spoolDir`
 * (after a restart) delivers what an old one left.
 */
export async function s3Sink(options: S3SinkOptions): Promise<S3Sink> {
  const settings = resolveOptions(options);
  const sdk = await loadClientS3();
  const ownClient = options.client === undefined;
  const client =
    options.client ??
    new sdk.S3Client({
      // Uploads are retried by the sink forever; one SDK attempt keeps each try within requestTimeoutMs.
      maxAttempts: 1,
      ...options.clientConfig,
      requestHandler: options.clientConfig?.requestHandler ?? {
        requestTimeout: settings.requestTimeoutMs,
        connectionTimeout: settings.requestTimeoutMs,
        throwOnRequestTimeout: true,
      },
    });
  await requireRegion(client, ownClient);
  const spool = await Spool.open({
    dir: options.spoolDir,
    maxBytes: settings.spoolMaxBytes,
    segmentBytes: Math.max(64 * 1024, Math.min(8 * MIB, Math.floor(settings.spoolMaxBytes / 8))),
    clock: settings.clock,
  });

  const prefix = normalizePrefix(options.prefix);
  const stopping = new AbortController();
  let uploadedObjects = 0;
  let uploadedRecords = 0;
  let lastError: string | null = null;
  let consecutiveFailures = 0;
  let collisions = 0;
  let closed = false;
  let closing: Promise<void> | undefined;
  let flushWaiters: { target: number; resolve: () => void }[] = [];
  let wake: (() => void) | undefined;
  const accepted = new AcceptedRecords();
  /** Last durable record per origin written through this instance (the spool file may be gone once uploaded). */
  const written = new Map<string, AuditChainHead>();
  /** The startup lookup of `options.origin` in S3. */
  let looked: { origin: string; head: AuditChainHead | undefined; error: string | null } | undefined;

  const stats = (): S3SinkStats => ({
    spooledRecords: spool.pendingRecords,
    spooledBytes: spool.pendingBytes,
    uploadedObjects,
    uploadedRecords,
    quarantinedLines: spool.quarantinedLines,
    collisions,
    lastError,
    consecutiveFailures,
    oldestSpooledAgeSeconds: spool.oldestAgeSeconds(),
    chainHeadError: looked?.error ?? null,
  });
  const backlog = () => ({ spooledRecords: spool.pendingRecords, spooledBytes: spool.pendingBytes, lastError });

  spool.onChange = () => {
    const done = spool.consumedRecords;
    const ready = flushWaiters.filter((waiter) => waiter.target <= done);
    if (ready.length > 0) {
      flushWaiters = flushWaiters.filter((waiter) => waiter.target > done);
      for (const waiter of ready) waiter.resolve();
    }
    notify();
    try {
      options.onBacklog?.(stats());
    } catch {
      // A metrics hook must not stop the uploader.
    }
  };

  function notify(): void {
    const resume = wake;
    wake = undefined;
    resume?.();
  }

  /** Sleeps until `ms` passed or something happened (a write, a flush, close). */
  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(done, Math.max(0, ms)) : undefined;
      // Background retries must not keep the process alive: the spool is durable.
      timer?.unref();
      function done() {
        clearTimeout(timer);
        if (wake === done) wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  /** The bytes already under `key`, or undefined when there is no such object. */
  async function existing(key: string): Promise<Buffer | undefined> {
    const timeout = AbortSignal.timeout(settings.requestTimeoutMs);
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: options.bucket, Key: key }), {
        abortSignal: AbortSignal.any([stopping.signal, timeout]),
      });
      return Buffer.from(await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    } catch (error) {
      const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === "NoSuchKey" || e.name === "NotFound" || e.$metadata?.httpStatusCode === 404) return undefined;
      // Reported as the upload it is part of (the check before the conditional put).
      const reason = timeout.aborted
        ? `no response within requestTimeoutMs=${settings.requestTimeoutMs} (${describe(error)})`
        : describe(error);
      throw new S3SinkError(`PutObject s3://${options.bucket}/${key} failed: ${reason} (checking the key is free)`, { cause: error });
    }
  }

  /**
   * Never overwrites: the put is conditional (`If-None-Match: *`, atomic on S3), and the key is
   * checked first for stores that ignore the condition. The same bytes already there are a
   * re-upload after a crash (success); other bytes are a collision, kept and reported.
   * Returns false on a collision.
   */
  async function upload(batch: SpoolBatch): Promise<boolean> {
    const key = auditObjectKey(prefix, batch);
    const there = await existing(key);
    if (there !== undefined) return there.equals(Buffer.from(batch.body)) ? true : collide(key, batch);
    const lock = settings.objectLock;
    const command = new sdk.PutObjectCommand({
      Bucket: options.bucket,
      Key: key,
      Body: batch.body,
      IfNoneMatch: "*",
      ContentType: "application/x-ndjson",
      ...(lock && {
        ObjectLockMode: lock.mode,
        ObjectLockRetainUntilDate: new Date((settings.clock() + lock.retainDays * 86_400) * 1000),
        // S3 requires an integrity checksum on uploads with a retention period.
        ChecksumAlgorithm: "CRC32",
      }),
    });
    const timeout = AbortSignal.timeout(settings.requestTimeoutMs);
    try {
      await client.send(command, { abortSignal: AbortSignal.any([stopping.signal, timeout]) });
      return true;
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) {
        // Someone wrote the key between our check and our put.
        const now = await existing(key);
        if (now !== undefined && now.equals(Buffer.from(batch.body))) return true;
        return collide(key, batch);
      }
      const reason = timeout.aborted
        ? `no response within requestTimeoutMs=${settings.requestTimeoutMs} (${describe(error)})`
        : describe(error);
      throw new S3SinkError(`PutObject s3://${options.bucket}/${key} failed: ${reason}`, { cause: error });
    }
  }

  /** Keeps a colliding batch beside the spool (durably) and reports it; never overwrites S3. */
  async function collide(key: string, batch: SpoolBatch): Promise<false> {
    collisions += 1;
    const dir = join(options.spoolDir, "collisions");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${key.replace(/[^A-Za-z0-9._-]+/g, "_")}.${Date.now()}.jsonl`);
    const fh = await open(file, "wx", 0o600);
    try {
      await fh.writeFile(batch.body);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    const dirHandle = await open(dir, "r");
    await dirHandle.sync().finally(() => dirHandle.close());
    lastError =
      `collision: s3://${options.bucket}/${key} already holds other records (another writer, or a fixed origin restarted without resuming its chain); ` +
      `not overwritten; this batch was kept in ${file}`;
    return false;
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      if (spool.pendingRecords === 0) {
        await pause(Number.POSITIVE_INFINITY);
        continue;
      }
      if (flushWaiters.length === 0 && !spool.hasAnnouncedBatch) {
        // A spool half full is uploaded at once: waiting for more would only bring the limit closer.
        const full =
          spool.pendingRecords >= settings.maxRecords ||
          spool.pendingBytes >= Math.min(settings.maxBytes, settings.spoolMaxBytes / 2);
        const due = (spool.oldestSpooledAtMs() ?? 0) + settings.maxDelayMs - performance.now();
        if (!full && due > 0) {
          await pause(due);
          continue;
        }
      }
      let batch: SpoolBatch | undefined;
      let uploaded = false;
      try {
        batch = await spool.nextBatch({ maxRecords: settings.maxRecords, maxBytes: settings.maxBytes });
        if (batch === undefined) {
          // Nothing readable although records are counted: never spin on it.
          await pause(settings.retry.maxDelayMs);
          continue;
        }
        await spool.announce(batch);
        if (await upload(batch)) {
          uploaded = true;
          uploadedObjects += 1;
          uploadedRecords += batch.records;
          consecutiveFailures = 0;
          lastError = null;
        }
        // A collision was kept under collisions/ (and reported): the spool moves on past it.
        await spool.complete(batch);
      } catch (error) {
        if (stopping.signal.aborted) break;
        consecutiveFailures += 1;
        // After a successful upload only the local spool can fail (S3 has the batch; a restart
        // would upload it again under the same key).
        lastError = uploaded ? `spool ${options.spoolDir}: ${describe(error)}` : describe(error);
        spool.onChange();
        // A flush cuts the wait short (one immediate retry per flush call).
        await pause(backoff(consecutiveFailures, settings.retry));
      }
    }
  }

  const loop = run().catch((error: unknown) => {
    // Unreachable by design (run catches per step); if it happens, say so instead of hanging quietly.
    lastError = `uploader stopped: ${describe(error)}`;
  });

  function validate(records: readonly AuditRecord[]): void {
    for (const [index, record] of records.entries()) {
      const problem =
        typeof record !== "object" || record === null
          ? "is not an object"
          : !Number.isSafeInteger(record.seq) || record.seq < 0
            ? `has no valid seq (got ${JSON.stringify(record.seq)})`
            : typeof record.timestamp !== "number" || !Number.isFinite(record.timestamp)
              ? `has no valid timestamp in Unix seconds (got ${JSON.stringify(record.timestamp)})`
              : typeof record.origin !== "string" || record.origin === ""
                ? `has no origin (got ${JSON.stringify(record.origin)})`
                : undefined;
      if (problem !== undefined) {
        throw new TypeError(`s3Sink.write: record ${index} ${problem}; records must come from the AuditLog`);
      }
    }
  }

  const sink: S3Sink = {
    name: options.name ?? "s3",
    spoolDir: options.spoolDir,
    async write(records) {
      if (closed) throw new S3SinkError(`S3 audit sink for s3://${options.bucket}/${prefix} is closed`);
      if (records.length === 0) return;
      validate(records);
      const { fresh, storing } = accepted.split(records);
      if (fresh.length > 0) {
        const bytes = Buffer.from(fresh.map((record) => `${JSON.stringify(record)}\n`).join(""), "utf8");
        const durable = spool.append(bytes, fresh.length).catch((error: unknown) => {
          if (error instanceof S3SpoolFullError) {
            // Re-raised with the upload error that explains why the spool filled up.
            throw new S3SpoolFullError(options.spoolDir, bytes.length, backlog(), settings.spoolMaxBytes);
          }
          throw error;
        });
        accepted.add(fresh, durable);
        storing.push(durable);
      }
      await Promise.all(storing);
      for (const record of records) {
        const known = written.get(record.origin);
        if (known === undefined || record.seq >= known.seq) {
          written.set(record.origin, { origin: record.origin, seq: record.seq, hash: record.hash });
          if (written.size > 64) written.delete(written.keys().next().value!);
        }
      }
    },
    flush(timeoutMs = settings.flushTimeoutMs) {
      const target = spool.consumedRecords + spool.pendingRecords + spool.queuedRecordCount;
      if (spool.consumedRecords >= target) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          target,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          flushWaiters = flushWaiters.filter((other) => other !== waiter);
          reject(new S3FlushTimeoutError(timeoutMs, options.spoolDir, backlog()));
        }, timeoutMs);
        flushWaiters.push(waiter);
        notify();
      });
    },
    close() {
      // A second call (e.g. after the AuditLog's close gave up waiting) waits for the first.
      closing ??= (async () => {
        closed = true;
        await sink.flush(settings.closeTimeoutMs).catch(() => {});
        stopping.abort();
        notify();
        await loop;
        await spool.close();
        if (ownClient) client.destroy();
      })();
      return closing;
    },
    stats,
    chainHead(origin) {
      const local = newer(spool.lastRecordOf(origin), written.get(origin));
      if (local !== undefined) return checkedHead(local, "the local spool");
      if (looked?.origin === origin) {
        if (looked.error !== null) {
          throw new S3SinkError(`cannot tell where origin ${JSON.stringify(origin)} stands in s3://${options.bucket}/${prefix}: ${looked.error}`);
        }
        return looked.head;
      }
      throw new S3SinkError(
        `chainHead(${JSON.stringify(origin)}): no record of it in the spool, and S3 was not searched for it ` +
          `(pass origin: ${JSON.stringify(origin)} to s3Sink() to continue its chain from S3)`,
      );
    },
  };

  const wanted = options.origin;
  if (wanted !== undefined && spool.lastRecordOf(wanted) === undefined) {
    looked = { origin: wanted, head: undefined, error: null };
    const deadline = AbortSignal.timeout(settings.chainHeadTimeoutMs);
    try {
      looked.head = await findS3ChainHead({
        sdk,
        client,
        bucket: options.bucket,
        prefix,
        origin: wanted,
        pageSize: settings.listPageSize,
        signal: deadline,
        requestTimeoutMs: settings.requestTimeoutMs,
      });
    } catch (error) {
      looked.error = deadline.aborted
        ? `no answer within chainHeadTimeoutMs=${settings.chainHeadTimeoutMs} (${describe(error)})`
        : `looking it up failed: ${describe(error)}`;
    }
  }
  return sink;
}

function newer(a: AuditChainHead | undefined, b: AuditChainHead | undefined): AuditChainHead | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return b.seq > a.seq ? b : a;
}

/** The log refuses (throws from its constructor) a head with a malformed hash: say so here instead. */
function checkedHead(head: AuditChainHead, where: string): AuditChainHead {
  if (!/^[0-9a-f]{64}$/.test(head.hash)) {
    throw new S3SinkError(`the last record of origin ${JSON.stringify(head.origin)} in ${where} (seq ${head.seq}) has no valid hash`);
  }
  return head;
}

interface Settings {
  spoolMaxBytes: number;
  maxRecords: number;
  maxBytes: number;
  maxDelayMs: number;
  requestTimeoutMs: number;
  retry: { initialDelayMs: number; maxDelayMs: number };
  flushTimeoutMs: number;
  closeTimeoutMs: number;
  objectLock: S3SinkOptions["objectLock"];
  clock: () => number;
  chainHeadTimeoutMs: number;
  listPageSize: number;
}

function resolveOptions(options: S3SinkOptions): Settings {
  const fail = (message: string): never => {
    throw new TypeError(`s3Sink: ${message}`);
  };
  if (typeof options !== "object" || options === null) fail("options are required ({ bucket, spoolDir, ... })");
  if (typeof options.bucket !== "string" || options.bucket === "") fail("bucket is required (the S3 bucket name)");
  if (typeof options.spoolDir !== "string" || options.spoolDir === "") {
    fail(
      "spoolDir is required: a directory on persistent storage where records wait for upload " +
        "(e.g. /var/lib/openrtc/audit-spool); it must survive a restart, so no temporary default is used",
    );
  }
  if (options.prefix !== undefined && typeof options.prefix !== "string") fail("prefix must be a string");
  if (options.origin !== undefined && (typeof options.origin !== "string" || options.origin === "")) {
    fail("origin must be a non-empty string (the log's fixed origin)");
  }
  const positive = (value: number | undefined, fallback: number, name: string): number => {
    if (value === undefined) return fallback;
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      fail(`${name} must be a positive number, got ${String(value)}`);
    }
    return value;
  };
  const lock = options.objectLock;
  if (lock !== undefined) {
    if (lock.mode !== "GOVERNANCE" && lock.mode !== "COMPLIANCE") {
      fail(`objectLock.mode must be "GOVERNANCE" or "COMPLIANCE", got ${JSON.stringify(lock.mode)}`);
    }
    positive(lock.retainDays, 1, "objectLock.retainDays");
  }
  return {
    spoolMaxBytes: positive(options.spoolMaxBytes, 256 * MIB, "spoolMaxBytes"),
    maxRecords: Math.floor(positive(options.batch?.maxRecords, 10_000, "batch.maxRecords")),
    maxBytes: positive(options.batch?.maxBytes, 4 * MIB, "batch.maxBytes"),
    maxDelayMs: positive(options.batch?.maxDelayMs, 10_000, "batch.maxDelayMs"),
    requestTimeoutMs: positive(options.requestTimeoutMs, 10_000, "requestTimeoutMs"),
    retry: {
      initialDelayMs: positive(options.retry?.initialDelayMs, 500, "retry.initialDelayMs"),
      maxDelayMs: positive(options.retry?.maxDelayMs, 30_000, "retry.maxDelayMs"),
    },
    flushTimeoutMs: positive(options.flushTimeoutMs, 30_000, "flushTimeoutMs"),
    closeTimeoutMs: positive(options.closeTimeoutMs, 5_000, "closeTimeoutMs"),
    objectLock: lock,
    clock: options.clock ?? systemClock,
    chainHeadTimeoutMs: positive(options.chainHeadTimeoutMs, 10_000, "chainHeadTimeoutMs"),
    listPageSize: Math.max(1, Math.min(1000, Math.floor(positive(options.listPageSize, 1000, "listPageSize")))),
  };
}

/**
 * The SDK resolves the region lazily and would fail every upload; a missing region is a
 * configuration error, so say it when the sink is created.
 */
async function requireRegion(client: S3Client, ownClient: boolean): Promise<void> {
  try {
    const region = await client.config.region();
    if (typeof region === "string" && region !== "") return;
  } catch {
    // reported below
  }
  if (ownClient) client.destroy();
  throw new TypeError(
    "s3Sink: no AWS region: pass clientConfig.region (or a client with one), or set AWS_REGION",
  );
}

/** Exponential backoff with "equal jitter": between half and all of the capped exponential delay. */
export function backoff(failures: number, retry: { initialDelayMs: number; maxDelayMs: number }): number {
  const capped = Math.min(retry.maxDelayMs, retry.initialDelayMs * 2 ** Math.min(30, failures - 1));
  return capped / 2 + (Math.random() * capped) / 2;
}

/** The sink's own errors read as their message; anything else in core's one wording (name, errno code, message). */
function describe(error: unknown): string {
  return error instanceof S3SinkError ? error.message : describeError(error);
}
