import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { AgentPresence } from "./types.ts";

/**
 * A presence probe for the hold-call agent's marker files (`HOLD_CALL_MARKER_DIR`): the agent
 * writes `<jobId>.started` with its job process's pid when its entry runs. LiveKit's server
 * learns that an agent left from the room (media); here no room exists, so the job process
 * being alive stands in for the agent participant being in the room.
 * - no marker yet → `not_joined`; marker and the pid alive → `in_room`; pid gone → `left`.
 */
export function markerDirPresence(dir: string): (jobId: string) => AgentPresence {
  return (jobId) => {
    const file = join(dir, `${jobId}.started`);
    if (!existsSync(file)) return "not_joined";
    const pid = Number(readFileSync(file, "utf8"));
    if (!Number.isSafeInteger(pid) || pid <= 0) return "not_joined";
    try {
      process.kill(pid, 0);
      return "in_room";
    } catch (e) {
      // EPERM: the pid exists (owned by someone else), so it is alive.
      return (e as NodeJS.ErrnoException).code === "EPERM" ? "in_room" : "left";
    }
  };
}
