import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { normalizePrefix, parseAuditObjectKey } from "./key.ts";
import { loadClientS3 } from "./peer.ts";
import { listObjectPages } from "./list.ts";

export interface S3AuditLinesOptions {
  bucket: string;
  prefix?: string;
  client?: S3Client;
  clientConfig?: S3ClientConfig;
  /** Only objects of this origin. */
  origin?: string;
  /** Keys per ListObjectsV2 page (S3's maximum and default: 1000). */
  pageSize?: number;
  /** Per request. Default 30 s. */
  requestTimeoutMs?: number;
}

/** One line of an audit object, with where it came from (for error reports). */
export interface S3AuditLine {
  /** The object's key. */
  key: string;
  /** 1-based line number within the object. */
  lineNo: number;
  line: string;
}

/**
 * The audit lines the S3 sink wrote under `s3://bucket/prefix`, object by object in key order
 * (ListObjectsV2, all pages, keys sorted, then GetObject each): per origin that is `seq` order, ready for
 * `verifyAuditLog` / `AuditVerifier`. Objects not in the sink's key layout are skipped.
 */
export async function* s3AuditLines(options: S3AuditLinesOptions): AsyncGenerator<string, void, undefined> {
  for await (const entry of s3AuditLineEntries(options)) yield entry.line;
}

/** Like `s3AuditLines`, with each line's object key and line number (as `openrtc audit verify` reports them). */
export async function* s3AuditLineEntries(options: S3AuditLinesOptions): AsyncGenerator<S3AuditLine, void, undefined> {
  if (typeof options.bucket !== "string" || options.bucket === "") {
    throw new TypeError("s3AuditLines: bucket is required (the S3 bucket name)");
  }
  const sdk = await loadClientS3();
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const client =
    options.client ??
    new sdk.S3Client({
      ...options.clientConfig,
      requestHandler: options.clientConfig?.requestHandler ?? {
        requestTimeout: requestTimeoutMs,
        connectionTimeout: requestTimeoutMs,
        throwOnRequestTimeout: true,
      },
    });
  const prefix = normalizePrefix(options.prefix);
  const signal = () => ({ abortSignal: AbortSignal.timeout(requestTimeoutMs) });
  try {
    // All keys first, then sorted: S3 lists in UTF-8 binary order, but not every S3-compatible
    // store does, and the order is what puts each origin's records in seq order.
    const keys: string[] = [];
    const input = { Bucket: options.bucket, Prefix: prefix, ...(options.pageSize !== undefined && { MaxKeys: options.pageSize }) };
    for await (const page of listObjectPages(sdk, client, input, signal)) {
      for (const object of page.Contents ?? []) {
        const key = object.Key;
        if (key === undefined) continue;
        const parsed = parseAuditObjectKey(prefix, key);
        if (parsed !== undefined && (options.origin === undefined || parsed.origin === options.origin)) keys.push(key);
      }
    }
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const key of keys) {
      const object = await client.send(new sdk.GetObjectCommand({ Bucket: options.bucket, Key: key }), signal());
      const text = (await object.Body?.transformToString("utf8")) ?? "";
      const lines = text.split("\n");
      // The final "" after the last newline is not a line; any other empty line is (the verifier flags it).
      if (lines.at(-1) === "") lines.pop();
      for (const [index, line] of lines.entries()) yield { key, lineNo: index + 1, line };
    }
  } finally {
    if (options.client === undefined) client.destroy();
  }
}
