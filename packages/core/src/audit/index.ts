// `@openrtc/core/audit`: what sink authors and audit tools need beyond the root export
// (record lines, hashing, checkpoint messages, the rotated-file naming, shared error text).
// Internals (line caching, rotation digit counts) stay out on purpose.
export { AuditEventType, AuditLog, AuditSinkTimeoutError } from "./log.ts";
export type {
  AuditChainHead,
  AuditEmitFields,
  AuditFlushOptions,
  AuditFlushResult,
  AuditHooks,
  AuditLogOptions,
  AuditLogStats,
  AuditRecord,
  AuditSink,
  AuditSinkStats,
  AuditUndelivered,
} from "./log.ts";
export { auditLine } from "./line.ts";
export { GENESIS_HASH, computeRecordHash, sha256Hex } from "./hash.ts";
export { CHECKPOINT_EVENT, CHECKPOINT_SIGNATURE_EVENT, checkpointMessage, ed25519KeyId, hmacKeyId } from "./checkpoint.ts";
export type { AuditCheckpointOptions, ExpectedCheckpoint, ExternalCheckpointSigner } from "./checkpoint.ts";
export { AuditVerifier, verifyAuditLog } from "./verify.ts";
export type {
  AuditChainSummary,
  AuditFault,
  AuditLineInput,
  AuditLinePosition,
  AuditLostRange,
  AuditVerifyFailure,
  AuditVerifyOk,
  AuditVerifyOptions,
  AuditVerifyResult,
} from "./verify.ts";
export {
  TORN_SUFFIX,
  auditFileBase,
  listAuditFiles,
  listRotatedAuditFiles,
  readAuditFileLines,
  readAuditFiles,
  rotatedAuditFileIndex,
  rotatedAuditFilePath,
  splitLines,
} from "./files.ts";
export type { AuditFileBase, AuditFileLine, ReadAuditFilesOptions } from "./files.ts";
export { describeError, withDeadline } from "./errors.ts";
export { onProcessExit } from "./exit.ts";
