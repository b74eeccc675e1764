import type { AuditRecord } from "./log.ts";

/**
 * The exact line of a record (`JSON.stringify(record)`), remembered by whoever already built it.
 * The AuditLog builds the canonical text to hash it; handing that text on saves every file-like
 * sink a second `JSON.stringify` per record, which is most of a durable sink's CPU cost.
 *
 * Kept on the record itself under a non-enumerable symbol when the record is still extensible
 * (JSON, Object.keys, spread and equality checks all ignore it): free for the GC. A record that
 * is already frozen falls back to a WeakMap, which is correct but costs the GC an ephemeron per
 * record — remember the line before freezing.
 */
const LINE: unique symbol = Symbol("openrtc.auditLine");
const lines = new WeakMap<object, string>();

/** Remembers `line` as the serialized form of `record`. `line` must equal JSON.stringify(record). */
export function rememberAuditLine(record: AuditRecord, line: string): void {
  if (Object.isExtensible(record)) {
    Object.defineProperty(record, LINE, { value: line, enumerable: false, writable: false, configurable: false });
  } else {
    lines.set(record, line);
  }
}

/** `JSON.stringify(record)`, from the remembered text when there is one. */
export function auditLine(record: AuditRecord): string {
  return (record as { [LINE]?: string })[LINE] ?? lines.get(record) ?? JSON.stringify(record);
}
