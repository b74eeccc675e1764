export { fileSink, openFileSink, FileSinkError } from "./file-sink.ts";
export type {
  FileSink,
  FileSinkOpenInfo,
  FileSinkOptions,
  FileSinkStats,
  FileSinkWarning,
  FileSinkWarningCode,
  TornTailRecovery,
} from "./file-sink.ts";
export { nodeFileIo } from "./file-io.ts";
export type { AuditFileHandle, AuditFileIo } from "./file-io.ts";
export { listAuditFiles, readAuditFiles, rotatedAuditFilePath } from "@openrtc/core/audit";
export type { AuditFileLine } from "@openrtc/core/audit";
