import type { AuditRecord, AuditSink } from "../audit/log.ts";

/** An audit sink that keeps records in memory; for tests and examples. */
export function memorySink(name = "memory"): AuditSink & { records: AuditRecord[] } {
  const records: AuditRecord[] = [];
  return {
    name,
    records,
    write(batch) {
      records.push(...batch);
      return Promise.resolve();
    },
  };
}

/** A clock tests move by hand. */
export function manualClock(start = 1_700_000_000): { (): number; advance(seconds: number): void; set(t: number): void } {
  let now = start;
  const clock = () => now;
  clock.advance = (seconds: number) => {
    now += seconds;
  };
  clock.set = (t: number) => {
    now = t;
  };
  return clock;
}
