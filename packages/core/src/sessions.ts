/**
 * The registry of live sessions. It is the parent process's exact count of calls in flight:
 * `active_sessions`, the per-tenant and per-agent counts and drain completion all read it, so
 * every start is matched by exactly one end.
 *
 * Hot path: one Map set and delete per session, plain integer counters, no per-call allocation
 * beyond the session itself. Metrics and snapshots read these counters when asked.
 */
export type SessionStatus = "success" | "failed" | "cancelled";

export const SESSION_STATUSES: readonly SessionStatus[] = ["success", "failed", "cancelled"];

export interface SessionInfo {
  readonly jobId: string;
  readonly agentName: string;
  readonly roomName: string;
  /** The worker's deployment_version (`null` for an untagged worker). */
  readonly deploymentVersion: string | null;
  readonly tenant: string;
  /** The job's metadata; always has `tenant`. */
  readonly metadata: Readonly<Record<string, unknown>> & { readonly tenant: string };
  /** Unix seconds. */
  readonly startedAt: number;
  /** With `tenantPolicy: "label"`: the malformed tenant the job's metadata named (tenant is then "invalid"). */
  readonly invalidTenant?: string;
}

export interface SessionEnd {
  status: SessionStatus;
  error?: unknown;
}

export interface SessionOutcome {
  readonly status: SessionStatus;
  readonly error?: string;
  readonly endedAt: number;
  readonly durationSeconds: number;
}

/** Per-tenant counters. `label` is the metric label this tenant is counted under. */
export interface TenantStats {
  readonly tenant: string;
  live: number;
  started: number;
}

export interface LiveSessionView {
  job_id: string;
  agent_name: string;
  room_name: string;
  tenant: string;
  started_at: number;
  age_seconds: number;
}

export class SessionRegistry<T extends { readonly info: SessionInfo }> {
  readonly live = new Map<string, T>();
  readonly tenants = new Map<string, TenantStats>();
  readonly agents = new Map<string, number>();
  started = 0;
  failures = 0;

  has(jobId: string): boolean {
    return this.live.has(jobId);
  }

  get(jobId: string): T | undefined {
    return this.live.get(jobId);
  }

  add(entry: T): void {
    const info = entry.info;
    this.live.set(info.jobId, entry);
    let stats = this.tenants.get(info.tenant);
    if (stats === undefined) {
      stats = { tenant: info.tenant, live: 0, started: 0 };
      this.tenants.set(info.tenant, stats);
    }
    stats.live++;
    stats.started++;
    this.agents.set(info.agentName, (this.agents.get(info.agentName) ?? 0) + 1);
    this.started++;
  }

  /** Returns false when the session had already ended (ending twice counts once). */
  remove(entry: T, status: SessionStatus): boolean {
    const info = entry.info;
    if (this.live.get(info.jobId) !== entry) return false;
    this.live.delete(info.jobId);
    const stats = this.tenants.get(info.tenant);
    if (stats !== undefined) stats.live--;
    const agentCount = (this.agents.get(info.agentName) ?? 1) - 1;
    if (agentCount === 0) this.agents.delete(info.agentName);
    else this.agents.set(info.agentName, agentCount);
    if (status === "failed") this.failures++;
    return true;
  }

  get size(): number {
    return this.live.size;
  }

  byTenant(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const stats of this.tenants.values()) if (stats.live > 0) out[stats.tenant] = stats.live;
    return out;
  }

  byAgent(): Record<string, number> {
    return Object.fromEntries(this.agents);
  }

  /** Live sessions, oldest first, with their ages: what an operator reads when a drain is stuck. */
  liveSessions(now: number): LiveSessionView[] {
    const out: LiveSessionView[] = [];
    for (const { info } of this.live.values()) {
      out.push({
        job_id: info.jobId,
        agent_name: info.agentName,
        room_name: info.roomName,
        tenant: info.tenant,
        started_at: info.startedAt,
        age_seconds: Math.max(0, now - info.startedAt),
      });
    }
    return out.sort((a, b) => a.started_at - b.started_at);
  }
}

export function errorMessage(error: unknown): string | undefined {
  if (error === undefined || error === null) return undefined;
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : String(error);
}
