import type { PoolState } from "./drain.ts";
import type { LiveSessionView } from "./sessions.ts";

/** The JSON form: snake_case keys shared with openrtc-python. This key set is a contract. */
export interface RuntimeSnapshotJSON {
  timestamp: number;
  uptime_seconds: number;
  worker_id: string;
  deployment_version: string | null;
  draining: boolean;
  state: PoolState;
  active_sessions: number;
  total_sessions_started: number;
  total_session_failures: number;
  sessions_by_agent: Record<string, number>;
  sessions_by_tenant: Record<string, number>;
  rejected_jobs: number;
  drain_started_at: number | null;
  drain_stuck: boolean;
  member: boolean;
}

export const SNAPSHOT_KEYS: readonly (keyof RuntimeSnapshotJSON)[] = [
  "timestamp",
  "uptime_seconds",
  "worker_id",
  "deployment_version",
  "draining",
  "state",
  "active_sessions",
  "total_sessions_started",
  "total_session_failures",
  "sessions_by_agent",
  "sessions_by_tenant",
  "rejected_jobs",
  "drain_started_at",
  "drain_stuck",
  "member",
];

/**
 * A point-in-time view of one worker: what `GET /snapshot` serves and `openrtc top` renders.
 * `stuckSessions` lists the live sessions with their ages while a drain is stuck; it is not part
 * of the JSON contract (whose keys are fixed) and is served at `GET /sessions` instead.
 */
export class RuntimeSnapshot {
  constructor(
    readonly timestamp: number,
    readonly uptimeSeconds: number,
    readonly workerId: string,
    readonly deploymentVersion: string | null,
    readonly draining: boolean,
    readonly state: PoolState,
    readonly activeSessions: number,
    readonly totalSessionsStarted: number,
    readonly totalSessionFailures: number,
    readonly sessionsByAgent: Readonly<Record<string, number>>,
    readonly sessionsByTenant: Readonly<Record<string, number>>,
    readonly rejectedJobs: number,
    readonly drainStartedAt: number | null,
    readonly drainStuck: boolean,
    readonly member: boolean,
    readonly stuckSessions: readonly LiveSessionView[] = [],
  ) {}

  toJSON(): RuntimeSnapshotJSON {
    return {
      timestamp: this.timestamp,
      uptime_seconds: this.uptimeSeconds,
      worker_id: this.workerId,
      deployment_version: this.deploymentVersion,
      draining: this.draining,
      state: this.state,
      active_sessions: this.activeSessions,
      total_sessions_started: this.totalSessionsStarted,
      total_session_failures: this.totalSessionFailures,
      sessions_by_agent: { ...this.sessionsByAgent },
      sessions_by_tenant: { ...this.sessionsByTenant },
      rejected_jobs: this.rejectedJobs,
      drain_started_at: this.drainStartedAt,
      drain_stuck: this.drainStuck,
      member: this.member,
    };
  }
}
