export { systemClock } from "./clock.ts";
export type { Clock } from "./clock.ts";
export { AuditEventType } from "./audit.ts";
export type { AuditEmitFields, AuditRecord, AuditSink } from "./audit.ts";
