export { systemClock } from "./clock.ts";
export type { Clock } from "./clock.ts";
export { AuditEventType } from "./audit.ts";
export type { AuditEmitFields, AuditRecord, AuditSink } from "./audit.ts";
export {
  ROTATED_INDEX_DIGITS,
  TORN_SUFFIX,
  auditFileBase,
  listAuditFiles,
  listRotatedAuditFiles,
  readAuditFiles,
  rotatedAuditFileIndex,
  rotatedAuditFilePath,
} from "./audit-files.ts";
export type { AuditFileBase, AuditFileLine } from "./audit-files.ts";
