import type { PlacementStrategy } from "./types.ts";

export interface PlacementCandidate {
  id: string;
  /** Registration order, unique per worker. */
  seq: number;
  /** Jobs running on the worker plus offers in flight to it. */
  load: number;
}

/**
 * Orders the workers a job is offered to. Pure and deterministic: the same candidates and
 * cursor always give the same order, so a replayed sequence of dispatches places identically.
 *
 * `least-jobs` prefers the worker with the fewest jobs (the dispatcher's own count, not the
 * CPU load the worker reports, which is noisy), ties broken by registration order.
 * `round-robin` starts after the worker that was offered the previous job (`cursor` = its seq).
 */
export function placementOrder(
  candidates: readonly PlacementCandidate[],
  strategy: PlacementStrategy,
  cursor: number,
): string[] {
  const bySeq = [...candidates].sort((a, b) => a.seq - b.seq);
  if (strategy === "least-jobs") {
    return bySeq.sort((a, b) => a.load - b.load || a.seq - b.seq).map((c) => c.id);
  }
  const start = bySeq.findIndex((c) => c.seq > cursor);
  const rotated = start <= 0 ? bySeq : [...bySeq.slice(start), ...bySeq.slice(0, start)];
  return rotated.map((c) => c.id);
}
