import type { AuditRecord } from "@openrtc/core/audit";

interface Entry {
  hash: unknown;
  durable: Promise<void>;
}

/**
 * The records this sink already took, per origin, so `write` is idempotent on (origin, seq):
 * the AuditLog abandons a write that outlives its timeout and sends the batch again, and the
 * spool must not hold (and S3 must not receive) those records twice. A repeated record waits for
 * the write that is storing it, and fails with it; when that write fails the record is forgotten,
 * so the next retry stores it. Only an exact repeat (same seq AND hash) is skipped, so a new log
 * reusing an origin never loses records.
 */
export class AcceptedRecords {
  readonly #byOrigin = new Map<string, Map<number, Entry>>();
  readonly #perOrigin: number;
  readonly #origins: number;

  constructor(perOrigin = 20_000, origins = 64) {
    this.#perOrigin = perOrigin;
    this.#origins = origins;
  }

  /** Splits a batch into records not taken yet, and the writes storing the others. */
  split(records: readonly AuditRecord[]): { fresh: AuditRecord[]; storing: Promise<void>[] } {
    const fresh: AuditRecord[] = [];
    const storing = new Set<Promise<void>>();
    for (const record of records) {
      const entry = this.#byOrigin.get(record.origin)?.get(record.seq);
      if (entry !== undefined && entry.hash === record.hash) storing.add(entry.durable);
      else fresh.push(record);
    }
    return { fresh, storing: [...storing] };
  }

  add(records: readonly AuditRecord[], durable: Promise<void>): void {
    for (const record of records) {
      let seen = this.#byOrigin.get(record.origin);
      if (seen === undefined) {
        seen = new Map();
        this.#byOrigin.set(record.origin, seen);
        if (this.#byOrigin.size > this.#origins) this.#byOrigin.delete(this.#byOrigin.keys().next().value!);
      }
      seen.set(record.seq, { hash: record.hash, durable });
      if (seen.size > this.#perOrigin) seen.delete(seen.keys().next().value!);
    }
    durable.catch(() => {
      for (const record of records) {
        const seen = this.#byOrigin.get(record.origin);
        if (seen?.get(record.seq)?.durable === durable) seen.delete(record.seq);
      }
    });
  }
}
