import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { normalizePrefix, parseAuditObjectKey } from "./key.ts";
import { loadClientS3 } from "./peer.ts";

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

/**
 * The audit lines the S3 sink wrote under `s3://bucket/prefix`, object by object in key order
 * (ListObjectsV2, all pages, then GetObject each): per origin that is `seq` order, ready for
 * `verifyAuditLog` / `AuditVerifier`. Objects not in the sink's key layout are skipped.
 */
export async function* s3AuditLines(options: S3AuditLinesOptions): AsyncGenerator<string, void, undefined> {
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
    let continuationToken: string | undefined;
    do {
      const page = await client.send(
        new sdk.ListObjectsV2Command({
          Bucket: options.bucket,
          Prefix: prefix,
          ...(options.pageSize !== undefined && { MaxKeys: options.pageSize }),
          ...(continuationToken !== undefined && { ContinuationToken: continuationToken }),
        }),
        signal(),
      );
      // S3 lists keys in UTF-8 binary order; sort anyway so other S3-compatible stores behave alike.
      const keys = (page.Contents ?? [])
        .map((object) => object.Key)
        .filter((key): key is string => key !== undefined)
        .filter((key) => {
          const parsed = parseAuditObjectKey(prefix, key);
          return parsed !== undefined && (options.origin === undefined || parsed.origin === options.origin);
        })
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      for (const key of keys) {
        const object = await client.send(new sdk.GetObjectCommand({ Bucket: options.bucket, Key: key }), signal());
        const text = (await object.Body?.transformToString("utf8")) ?? "";
        for (const line of text.split("\n")) if (line !== "") yield line;
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
  } finally {
    if (options.client === undefined) client.destroy();
  }
}
