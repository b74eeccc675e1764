/**
 * The worker's lifecycle, in one place.
 *
 *   starting ──markReady──▶ serving ──beginDrain──▶ draining ──last session ends──▶ drained
 *       │                                              ▲                               │
 *       └──────────────────beginDrain──────────────────┘                     close ──▶ closed
 *
 * `closed` is reachable from every state (an explicit, recorded choice when sessions are live).
 */
export type PoolState = "starting" | "serving" | "draining" | "drained" | "closed";

const TRANSITIONS: Readonly<Record<PoolState, readonly PoolState[]>> = {
  starting: ["serving", "draining", "closed"],
  serving: ["draining", "closed"],
  draining: ["drained", "closed"],
  drained: ["closed"],
  closed: [],
};

export function canTransition(from: PoolState, to: PoolState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Whether new jobs may start in this state (membership is checked separately). */
export function stateAccepts(state: PoolState): boolean {
  return state === "starting" || state === "serving";
}

export function isDrainingState(state: PoolState): boolean {
  return state === "draining" || state === "drained";
}

export interface DrainOptions {
  /** Who asked, as the caller says: an operator, a signal, a coordinator. Recorded in the audit log. */
  actor?: string;
  reason?: string;
  /**
   * How the caller was authenticated, when that is known apart from what it claims (`actor`):
   * the control server records `"token"` or `"loopback"`. Recorded as `auth` in `drain_started`.
   */
  auth?: string;
  /** Extra flat fields for the `deployment.drain_started` record (e.g. `remote_address`). */
  fields?: Readonly<Record<string, string | number | boolean>>;
}

export type RejectReason = "draining" | "membership" | "invalid_metadata";

/** A job the pool refused. A rejected job raises rather than starting. */
export class JobRejectedError extends Error {
  override readonly name = "JobRejectedError";
  constructor(
    readonly reason: RejectReason,
    readonly jobId: string,
    message: string,
  ) {
    super(message);
  }
}
