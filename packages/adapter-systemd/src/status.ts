import type { AgentPool } from "@openrtc/core";

/** Longest STATUS= text sent; `systemctl status` shows one line, and a datagram stays small. */
const MAX_STATUS_CHARS = 200;

/** `4m12s`, `1h0m3s`, `42s`: short enough for `systemctl status`, exact to the second. */
export function formatAge(seconds: number): string {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

function calls(n: number): string {
  return `${n} live call${n === 1 ? "" : "s"}`;
}

/**
 * The one-line STATUS= an operator reads in `systemctl status`:
 * "v2.0.0 serving, 3 live calls" / "v1.0.0 draining, 2 live calls left, oldest 4m12s".
 */
export function formatStatus(pool: AgentPool, note?: string): string {
  const version = pool.deploymentVersion ?? "untagged";
  const live = pool.activeSessions;
  let text: string;
  switch (pool.state) {
    case "starting":
      text = `${version} starting`;
      break;
    case "serving":
      text = pool.member
        ? `${version} serving, ${calls(live)}`
        : `${version} serving, not a member (${pool.membershipReason ?? "not_member"}): no new calls, ${calls(live)}`;
      break;
    case "draining": {
      const oldest = live > 0 ? pool.liveSessions()[0] : undefined;
      text = `${version} draining, ${calls(live)} left${oldest === undefined ? "" : `, oldest ${formatAge(oldest.age_seconds)}`}`;
      if (pool.drainStuck) text += ", stuck past the drain timeout";
      break;
    }
    case "drained":
      text = `${version} drained, exiting`;
      break;
    case "closed":
      text = `${version} closed, exiting`;
      break;
  }
  if (note !== undefined) text += ` (${note})`;
  // One line, bounded: a note (an error message) must not break the datagram's KEY=VALUE lines.
  text = text.replace(/[\r\n]+/g, " ");
  return text.length > MAX_STATUS_CHARS ? `${text.slice(0, MAX_STATUS_CHARS - 1)}…` : text;
}
