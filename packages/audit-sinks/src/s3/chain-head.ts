import type { S3Client } from "@aws-sdk/client-s3";
import type { AuditChainHead } from "@openrtc/core/audit";
import { S3SinkError } from "./errors.ts";
import { parseAuditObjectKey } from "./key.ts";
import { listObjectPages } from "./list.ts";

type ClientS3Module = typeof import("@aws-sdk/client-s3");

export interface FindChainHeadOptions {
  sdk: ClientS3Module;
  client: S3Client;
  bucket: string;
  /** Normalized (`""` or ending in `/`). */
  prefix: string;
  origin: string;
  /** MaxKeys of each ListObjectsV2 page. */
  pageSize: number;
  /** Aborts every request (the lookup's deadline). */
  signal: AbortSignal;
  /** Per request. */
  requestTimeoutMs: number;
}

const HASH = /^[0-9a-f]{64}$/;

/**
 * The last record of `origin` the sink wrote under `s3://bucket/prefix` (see the key layout in
 * key.ts), or undefined when there is none. The origin sits below the date, so the UTC days are
 * walked newest first (years, months, days listed with a delimiter, each listing paginated) and
 * the first day holding objects of the origin has its highest `seqEnd` (all of that day's keys of
 * the origin, every page); that object's last line is the head. Seq grows with time, so no older
 * day can hold a higher seq (unless the writer's clock went back across midnight: the chain's
 * verifier would then report the fork). Throws on any failure or malformed answer: a head that
 * cannot be read is not guessed.
 */
export async function findS3ChainHead(options: FindChainHeadOptions): Promise<AuditChainHead | undefined> {
  const { prefix, origin } = options;
  const origins = `/${encodeURIComponent(origin)}/`;
  for (const year of await childPrefixes(options, prefix, /^\d{4}\/$/)) {
    for (const month of await childPrefixes(options, year, /^\d{2}\/$/)) {
      for (const day of await childPrefixes(options, month, /^\d{2}\/$/)) {
        let best: { key: string; seqEnd: number } | undefined;
        for await (const key of listKeys(options, `${day.slice(0, -1)}${origins}`)) {
          const parsed = parseAuditObjectKey(prefix, key);
          if (parsed === undefined || parsed.origin !== origin) continue;
          if (best === undefined || parsed.seqEnd > best.seqEnd) best = { key, seqEnd: parsed.seqEnd };
        }
        if (best !== undefined) return lastLine(options, best.key, best.seqEnd);
      }
    }
  }
  return undefined;
}

/** The sub-"folders" of `parent` whose last level matches `level`, newest (lexically highest) first. */
async function childPrefixes(options: FindChainHeadOptions, parent: string, level: RegExp): Promise<string[]> {
  const found: string[] = [];
  const input = { Bucket: options.bucket, Prefix: parent, Delimiter: "/", MaxKeys: options.pageSize };
  for await (const page of listObjectPages(options.sdk, options.client, input, () => request(options))) {
    for (const common of page.CommonPrefixes ?? []) {
      const child = common.Prefix;
      if (child !== undefined && child.startsWith(parent) && level.test(child.slice(parent.length))) found.push(child);
    }
  }
  return found.sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
}

async function* listKeys(options: FindChainHeadOptions, under: string): AsyncGenerator<string> {
  const input = { Bucket: options.bucket, Prefix: under, MaxKeys: options.pageSize };
  for await (const page of listObjectPages(options.sdk, options.client, input, () => request(options))) {
    for (const object of page.Contents ?? []) if (object.Key !== undefined) yield object.Key;
  }
}

async function lastLine(options: FindChainHeadOptions, key: string, seqEnd: number): Promise<AuditChainHead> {
  const object = await options.client.send(new options.sdk.GetObjectCommand({ Bucket: options.bucket, Key: key }), request(options));
  const text = (await object.Body?.transformToString("utf8")) ?? "";
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const line = lines.at(-1);
  let record: { origin?: unknown; seq?: unknown; hash?: unknown } | undefined;
  try {
    record = line === undefined ? undefined : (JSON.parse(line) as typeof record);
  } catch {
    record = undefined;
  }
  if (
    record === undefined ||
    record === null ||
    typeof record !== "object" ||
    record.origin !== options.origin ||
    record.seq !== seqEnd ||
    typeof record.hash !== "string" ||
    !HASH.test(record.hash)
  ) {
    throw new S3SinkError(
      `the last line of s3://${options.bucket}/${key} is not the record its key names ` +
        `(origin ${JSON.stringify(options.origin)}, seq ${seqEnd}); run \`openrtc audit verify s3://${options.bucket}/${options.prefix}\``,
    );
  }
  return { origin: options.origin, seq: seqEnd, hash: record.hash };
}

function request(options: FindChainHeadOptions): { abortSignal: AbortSignal } {
  return { abortSignal: AbortSignal.any([options.signal, AbortSignal.timeout(options.requestTimeoutMs)]) };
}
