import type { CutShortCause, JobFate } from "./types.ts";

/**
 * Something that ends a running job, as the dispatcher observes it. The caller's hang-up is one
 * of them; the others are the worker's and the "room's" signals.
 */
export type EndSignal =
  | { kind: "caller_hung_up" }
  /** The caller hung up while the presence probe said the agent had not joined yet. */
  | { kind: "agent_never_joined" }
  | { kind: "job_status"; status: "success" | "failed"; error?: string }
  /** The worker closed its own socket (AgentServer.close()): its job processes go with it. */
  | { kind: "worker_closed" }
  /** The socket dropped and no worker re-registered in its place within the grace period. */
  | { kind: "worker_lost" }
  /** The harness said the worker process is gone (markWorkerGone). */
  | { kind: "worker_gone" }
  /** The agent participant left the room without the job ending through the protocol. */
  | { kind: "agent_left_room"; how: "probe" | "reported" }
  | { kind: "room_deleted" }
  | { kind: "terminated" };

export interface Judgement {
  fate: JobFate;
  endReason: string;
  cause?: CutShortCause;
}

/**
 * Decides a running job's fate from the first signal that ends it.
 *
 * A call with a caller (`hasCaller`) is judged by the caller: `completed` only when the caller
 * hung up while the agent's job was still running; any earlier end is `cut_short` with the
 * cause the dispatcher observed, whatever the worker reported (a worker saying JS_SUCCESS
 * before the hang-up still cut the call short). `terminated` is kept: an operator ended it.
 *
 * A job dispatched without a caller keeps the older, worker-judged fates (JS_SUCCESS or the
 * agent deleting its room → completed; JS_FAILED → failed; worker gone → dropped), so existing
 * consumers read the same numbers. Those numbers take the worker's word; prefer a caller.
 */
export function judge(signal: EndSignal, hasCaller: boolean): Judgement {
  if (signal.kind === "terminated") return { fate: "terminated", endReason: "terminated" };
  if (hasCaller) {
    switch (signal.kind) {
      case "caller_hung_up":
        return { fate: "completed", endReason: "caller_hung_up" };
      case "agent_never_joined":
        return { fate: "cut_short", endReason: "caller_hung_up", cause: "agent_never_joined" };
      case "job_status":
        return signal.status === "success"
          ? { fate: "cut_short", endReason: "job_status", cause: "job_succeeded_early" }
          : { fate: "cut_short", endReason: "job_status", cause: "job_failed" };
      case "worker_closed":
      case "worker_lost":
      case "worker_gone":
        return { fate: "cut_short", endReason: signal.kind, cause: "worker_gone" };
      case "agent_left_room":
        return { fate: "cut_short", endReason: "agent_left_room", cause: "job_process_killed" };
      case "room_deleted":
        return { fate: "cut_short", endReason: "room_deleted", cause: "room_deleted" };
    }
  }
  switch (signal.kind) {
    case "caller_hung_up":
    case "agent_never_joined":
      // Unreachable: only jobs with a caller hang up. Kept total so a new kind cannot slip by.
      return { fate: "completed", endReason: "caller_hung_up" };
    case "job_status":
      return signal.status === "success" ? { fate: "completed", endReason: "job_status" } : { fate: "failed", endReason: "job_status" };
    case "worker_closed":
    case "worker_lost":
    case "worker_gone":
      return { fate: "dropped", endReason: signal.kind };
    case "agent_left_room":
      return { fate: "failed", endReason: "agent_left_room" };
    case "room_deleted":
      return { fate: "completed", endReason: "room_deleted" };
  }
}

/** The LiveKit job status the real server records for a signal (pkg/agent/worker.go `TerminateJob`, `UpdateJobStatus`). */
export function serverJobStatus(signal: EndSignal): { status: "JS_SUCCESS" | "JS_FAILED"; error?: string } | undefined {
  switch (signal.kind) {
    case "caller_hung_up":
    case "agent_never_joined":
    case "room_deleted":
    case "terminated":
      // The room closing terminates the job with a reason other than AGENT_LEFT_ROOM → JS_SUCCESS.
      return { status: "JS_SUCCESS" };
    case "agent_left_room":
      return { status: "JS_FAILED", error: "agent worker left the room" };
    case "job_status":
      return signal.status === "success" ? { status: "JS_SUCCESS" } : { status: "JS_FAILED", ...(signal.error ? { error: signal.error } : {}) };
    default:
      // A worker that disconnects is deregistered with its jobs' state untouched ("TODO update
      // dispatch state" in agentservice.go deregisterJob).
      return undefined;
  }
}
