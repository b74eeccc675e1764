import type { AuditRecord } from "./audit.ts";

/**
 * The exact line of a record (`JSON.stringify(record)`), remembered by whoever already built it.
 * The AuditLog builds the canonical text to hash it; handing that text on saves every file-like
 * sink a second `JSON.stringify` per record, which is most of a durable sink's CPU cost.
 * A WeakMap, so a record's line lives exactly as long as the record.
 */
const lines = new WeakMap<object, string>();

/** Remembers `line` as the serialized form of `record`. `line` must equal JSON.stringify(record). */
export function rememberAuditLine(record: AuditRecord, line: string): void {
  lines.set(record, line);
}

/** `JSON.stringify(record)`, from the remembered text when there is one. */
export function auditLine(record: AuditRecord): string {
  return lines.get(record) ?? JSON.stringify(record);
}
