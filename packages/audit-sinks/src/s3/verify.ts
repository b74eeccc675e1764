import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { AuditVerifier } from "@openrtc/core/audit";
import type { AuditVerifyOptions, AuditVerifyResult } from "@openrtc/core/audit";
import { s3AuditLineEntries } from "./lines.ts";

/** `s3://BUCKET` or `s3://BUCKET/PREFIX` → its parts (the prefix without surrounding slashes). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!match) throw new TypeError(`${JSON.stringify(url)} is not an S3 location: expected s3://BUCKET[/PREFIX]`);
  return { bucket: match[1]!, prefix: (match[2] ?? "").replace(/^\/+|\/+$/g, "") };
}

export interface VerifyS3AuditLogOptions extends AuditVerifyOptions {
  client?: S3Client;
  clientConfig?: S3ClientConfig;
  /** An S3-compatible endpoint (MinIO, a local test server): sets `endpoint` and path-style requests. */
  endpoint?: string;
}

/**
 * Checks the hash chains of the audit log the S3 sink wrote under `s3://BUCKET/PREFIX` (what
 * `openrtc audit verify s3://...` runs). A failure's `file` is the object key and `line` the line
 * within that object.
 */
export async function verifyS3AuditLog(url: string, options: VerifyS3AuditLogOptions = {}): Promise<AuditVerifyResult> {
  const { bucket, prefix } = parseS3Url(url);
  const { client, clientConfig, endpoint, ...verifyOptions } = options;
  const config: S3ClientConfig | undefined =
    endpoint === undefined ? clientConfig : { ...clientConfig, endpoint, forcePathStyle: true };
  const verifier = new AuditVerifier(verifyOptions);
  for await (const entry of s3AuditLineEntries({
    bucket,
    prefix,
    ...(client !== undefined && { client }),
    ...(config !== undefined && { clientConfig: config }),
  })) {
    if (!verifier.push(entry.line, { file: entry.key, line: entry.lineNo })) break;
  }
  return verifier.finish();
}
