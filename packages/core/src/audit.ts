import type { Clock } from "./clock.ts";

/** Event types the product writes. Users may emit their own dotted names too. */
export const AuditEventType = {
  DeploymentStarted: "deployment.started",
  DeploymentCompleted: "deployment.completed",
  DrainStarted: "deployment.drain_started",
  RolledBack: "deployment.rolled_back",
  WorkerRejected: "worker.rejected",
  DrainStuck: "deployment.drain_stuck",
  WorkerExited: "worker.exited",
} as const;

/**
 * One audit record, exactly as written (one JSON object a line in files). The extra fields
 * passed to `emit` sit flat beside these.
 */
export interface AuditRecord {
  seq: number;
  timestamp: number;
  event: string;
  actor: string;
  target: string;
  result: string;
  version: string | null;
  origin: string;
  prev_hash: string;
  hash: string;
  [field: string]: unknown;
}

export interface AuditEmitFields {
  actor?: string;
  target?: string;
  result?: string;
  version?: string | null;
  [field: string]: unknown;
}

/**
 * Where audit records go. `write` receives a batch in `seq` order; its promise resolving is the
 * acknowledgement of delivery (a durable sink resolves only once the batch is durable).
 */
export interface AuditSink {
  readonly name: string;
  write(records: readonly AuditRecord[]): Promise<void>;
  flush?(): Promise<void>;
  close?(): Promise<void>;
}
