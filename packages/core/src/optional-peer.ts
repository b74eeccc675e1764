/**
 * `@openrtc/audit-sinks/s3`, an optional peer (it depends on core), loaded at run time. The
 * specifier is a variable, not a literal: a bundler (esbuild, vite) resolves a literal `import()`
 * at build time, and this peer is usually not installed. Rejects when it is not.
 */
const S3_SINKS_MODULE: string = "@openrtc/audit-sinks/s3";

export function importAuditSinksS3<T>(): Promise<T> {
  return import(S3_SINKS_MODULE) as Promise<T>;
}
