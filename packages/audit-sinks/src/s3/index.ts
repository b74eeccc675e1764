export { s3Sink } from "./sink.ts";
export type { S3Sink, S3SinkOptions, S3SinkStats } from "./sink.ts";
export { s3AuditLineEntries, s3AuditLines } from "./lines.ts";
export type { S3AuditLine, S3AuditLinesOptions } from "./lines.ts";
export { auditObjectKey, parseAuditObjectKey } from "./key.ts";
export type { ObjectKeyParts, ParsedObjectKey } from "./key.ts";
export { S3FlushTimeoutError, S3SinkError, S3SpoolFullError } from "./errors.ts";
export type { S3SpoolBacklog } from "./errors.ts";
