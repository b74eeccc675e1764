import type { WorkerStatusName } from "./types.ts";

export interface SelectionCandidate {
  id: string;
  /** Last `UpdateWorkerStatus.status` (a fresh registration counts as available, like the server's zero value). */
  status: WorkerStatusName;
  /** Last `UpdateWorkerStatus.load`. */
  load: number;
}

export const NO_WORKERS_AVAILABLE = "no workers available";
export const NO_WORKERS_WITH_CAPACITY = "no workers with sufficient capacity";

export type Selection = { ok: true; id: string } | { ok: false; error: typeof NO_WORKERS_AVAILABLE | typeof NO_WORKERS_WITH_CAPACITY };

/**
 * Mirrors livekit/livekit `pkg/service/agentservice.go` `selectWorkerWeightedByLoad`: among the
 * key's workers not yet attempted and with status WS_AVAILABLE, pick one at random with weight
 * `max(0, 1 - load)`. No workers for the key at all → "no workers available"; a total weight of
 * 0 (every worker full, loaded to >= 1, or already attempted) → "no workers with sufficient
 * capacity".
 *
 * `candidates` are the key's workers in registration order; `random` returns [0, 1). Go walks a
 * map (random order); walking in registration order with a seeded source is just as fair and
 * replays exactly. Go's float32 rounding fallback returns `workers[0]`; here the fallback is the
 * last positive-weight candidate, so an attempted or full worker is never picked.
 */
export function selectWorkerWeightedByLoad(
  candidates: readonly SelectionCandidate[],
  attempted: ReadonlySet<string>,
  random: () => number,
): Selection {
  if (candidates.length === 0) return { ok: false, error: NO_WORKERS_AVAILABLE };
  const weighted: Array<{ id: string; weight: number }> = [];
  let sum = 0;
  for (const c of candidates) {
    if (attempted.has(c.id) || c.status !== "available") continue;
    const weight = Math.max(0, 1 - (Number.isFinite(c.load) ? c.load : 1));
    if (weight > 0) weighted.push({ id: c.id, weight });
    sum += weight;
  }
  if (sum === 0) return { ok: false, error: NO_WORKERS_WITH_CAPACITY };
  let rest = random() * sum;
  for (const w of weighted) {
    rest -= w.weight;
    if (rest <= 0) return { ok: true, id: w.id };
  }
  return { ok: true, id: weighted[weighted.length - 1]!.id };
}
