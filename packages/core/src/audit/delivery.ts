import type { AuditRecord } from "./record.ts";
import { RecordQueue } from "./queue.ts";

/**
 * Where audit records go. `write` receives a batch in `seq` order; its promise resolving is the
 * acknowledgement of delivery (a durable sink resolves only once the batch is durable).
 */
export interface AuditSink {
  readonly name: string;
  write(records: readonly AuditRecord[]): Promise<void>;
  flush?(): Promise<void>;
  close?(): Promise<void>;
  /**
   * Writes the batch synchronously and durably, now (the process is exiting: no event-loop turn
   * follows). Called by `AuditLog.flushSync()` with every record not yet acknowledged; records the
   * sink already holds must be skipped (idempotent on origin and seq). Optional: sinks without
   * it lose what is queued when the process exits abruptly.
   */
  writeSync?(records: readonly AuditRecord[]): void;
  /**
   * The last record of `origin` this sink holds durably (synchronously: the log asks in its
   * constructor), so a log with a fixed origin continues its chain after a restart.
   */
  chainHead?(origin: string): AuditChainHead | undefined;
}

/** Where a chain stands: its last record's seq and hash. */
export interface AuditChainHead {
  origin: string;
  seq: number;
  hash: string;
}

/** Records a sink lost to overflow and that no `audit.records_dropped` record accounts for yet. */
export interface LostRange {
  first: number;
  last: number;
  /** `prev_hash` of the first lost record: the hash of the last record this sink did get. */
  prevHash: string;
}

/**
 * One sink's delivery state: its bounded queue, the write in flight, retry backoff, counters.
 * The log drives it (`AuditLog` decides when to start writes); this holds the bookkeeping, so a
 * slow or failing sink's state never touches another's.
 */
export class SinkDelivery {
  readonly sink: AuditSink;
  /** Pending records, oldest first; the first `inFlight` are being written. */
  readonly queue = new RecordQueue<AuditRecord>();
  inFlight = 0;
  /** Increments per write attempt, so a late settle of an abandoned attempt is ignored. */
  attempt = 0;
  writeTimer: NodeJS.Timeout | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  failures = 0;
  delivered = 0;
  dropped = 0;
  unreportedDrops = 0;
  errors = 0;
  lastError: string | null = null;
  closed = false;
  /** Open overflow range; closed by the `audit.records_dropped` record that reports it. */
  lost: LostRange | undefined;
  /** Seq of the marker that reports `lost` once it is emitted but not yet delivered. */
  markerSeq: number | undefined;

  constructor(sink: AuditSink) {
    this.sink = sink;
  }

  /** Queues `record` unless the queue is full (or the sink closed, or a loss is still unreported). */
  offer(record: AuditRecord, maxQueue: number, closedLog: boolean): boolean {
    if (closedLog || this.closed || this.queue.size >= maxQueue || this.lost !== undefined) {
      this.dropped++;
      this.unreportedDrops++;
      if (this.lost === undefined) this.lost = { first: record.seq, last: record.seq, prevHash: record.prev_hash };
      else this.lost.last = record.seq;
      return false;
    }
    this.queue.push(record);
    return true;
  }

  /** The marker for `lost` goes to this sink even though `lost` is open (it is what closes it). */
  takeMarker(record: AuditRecord): void {
    this.lost = undefined;
    this.markerSeq = record.seq;
    this.queue.push(record);
  }

  /** True when no record with seq ≤ target is still waiting in this sink. */
  caughtUp(target: number): boolean {
    const first = this.queue.at(0);
    return first === undefined || first.seq > target || this.closed;
  }

  /** Records with seq ≤ target still queued. */
  pendingUpTo(target: number): number {
    let pending = 0;
    while (pending < this.queue.size && (this.queue.at(pending) as AuditRecord).seq <= target) pending++;
    return pending;
  }

  /** A loss no delivered marker accounts for yet: the sink's copy of the log has an unexplained hole. */
  get unrecordedLoss(): boolean {
    if (this.lost !== undefined) return true;
    const marker = this.markerSeq;
    if (marker === undefined) return false;
    const first = this.queue.at(0);
    if (first === undefined || first.seq > marker) {
      this.markerSeq = undefined;
      return false;
    }
    return true;
  }

  clearTimers(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.writeTimer);
    this.retryTimer = undefined;
    this.writeTimer = undefined;
  }
}
