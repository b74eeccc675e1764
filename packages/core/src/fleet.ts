// `openrtc fleet`: is the deploy done? The fleet model: what each worker was last seen doing,
// remembered across polls (a worker that disappears is judged by what it last held), summed per
// version and judged against the three facts of docs "Monitoring a deploy":
//   1. every worker reports the new version,
//   2. the old-version workers drained to zero and exited,
//   3. no call was dropped.
// Pure: no I/O here (fleet-sources.ts reads workers and Prometheus, fleet-cli.ts prints).
import type { LiveSessionView } from "./sessions.ts";

/** Where a worker is in its life, as the fleet sees it. */
export type WorkerPhase = "serving" | "draining" | "exited" | "unreachable";

/** One worker's state as one poll read it. */
export interface WorkerReading {
  /** Stable identity of the target: its control URL, or Prometheus' `job/instance`. */
  key: string;
  url?: string;
  /**
   * - `present`: the worker answered (or is scraped now);
   * - `gone`: the source knows the worker disappeared and says what it last reported
   *   (Prometheus' `last_over_time`);
   * - `unreachable`: nothing answered this time.
   */
  kind: "present" | "gone" | "unreachable";
  workerId?: string | null;
  version?: string | null;
  state?: string;
  draining?: boolean;
  activeSessions?: number;
  rejectedJobs?: number;
  drainStuck?: boolean;
  drainStartedAt?: number | null;
  /** `openrtc_dropped_sessions_total` of this process (counted by the worker itself). */
  droppedSessions?: number;
  /** Live calls with ages, oldest first, when the source could read them (GET /sessions). */
  sessions?: readonly Pick<LiveSessionView, "job_id" | "tenant" | "age_seconds">[];
  /** Why the sessions could not be read (e.g. "needs --token"). */
  sessionsError?: string;
  error?: string;
}

/** What the fleet knows about one worker after the latest poll. */
export interface FleetWorker {
  key: string;
  url: string | null;
  workerId: string | null;
  version: string | null;
  phase: WorkerPhase;
  /** The pool state the worker last reported (`serving`, `draining`, `drained`, `closed`), or null. */
  state: string | null;
  activeSessions: number;
  oldestCallSeconds: number | null;
  /** The oldest live calls (at most 5), for stuck-drain warnings. */
  oldestCalls: Pick<LiveSessionView, "job_id" | "tenant" | "age_seconds">[];
  rejectedJobs: number;
  /** Calls this worker dropped: its own counter plus calls it held when it vanished. */
  droppedSessions: number;
  drainStuck: boolean;
  drainStartedAt: number | null;
  /** Most calls seen on this worker since its drain began (the drain's 100%). */
  drainPeak: number;
  /** Unix seconds of the last successful read, null if never reached. */
  lastSeen: number | null;
  /** Consecutive polls that did not reach it. */
  misses: number;
  /** Human note: "exited clean", "vanished with 2 sessions", "unreachable: ECONNREFUSED". */
  note: string;
  sessionsError?: string;
}

export interface FleetTrackerOptions {
  /** Polls in a row a once-seen worker must miss before it counts as gone. Default 2. */
  goneAfter?: number;
}

/**
 * Remembers each worker across polls. A worker last seen draining (or idle) with zero calls that
 * stops answering exited clean; one that stops answering while it held calls dropped them
 * ("vanished with sessions"); one never reached is unreachable and keeps the deploy from done.
 */
export class FleetTracker {
  readonly workers = new Map<string, FleetWorker>();
  private readonly goneAfter: number;

  constructor(options: FleetTrackerOptions = {}) {
    this.goneAfter = Math.max(1, Math.floor(options.goneAfter ?? 2));
  }

  /** Folds in one poll. Known workers missing from `readings` count as not answering. */
  update(readings: readonly WorkerReading[], now: number): void {
    const seen = new Set<string>();
    for (const r of readings) {
      seen.add(r.key);
      this.apply(r, now);
    }
    for (const [key, w] of this.workers) {
      if (!seen.has(key) && w.phase !== "exited") this.apply({ key, kind: "unreachable", error: "no longer listed" }, now);
    }
  }

  private apply(r: WorkerReading, now: number): void {
    const prev = this.workers.get(r.key);
    if (r.kind === "present") {
      // The same address answering with another worker id: the process it held was replaced.
      if (prev !== undefined && prev.workerId !== null && r.workerId != null && prev.workerId !== r.workerId && prev.phase !== "exited") {
        const ghost = { ...prev, key: `${prev.key}#${prev.workerId}` };
        this.vanish(ghost);
        this.workers.set(ghost.key, ghost);
      }
      const replaced = prev !== undefined && prev.workerId !== null && r.workerId != null && prev.workerId !== r.workerId;
      const base = replaced ? undefined : prev;
      const active = r.activeSessions ?? 0;
      const draining = r.draining === true || r.state === "draining" || r.state === "drained";
      const phase: WorkerPhase = r.state === "closed" ? "exited" : draining ? "draining" : "serving";
      const sessions = r.sessions ?? [];
      const oldest = sessions.length > 0 ? Math.max(...sessions.map((s) => s.age_seconds)) : null;
      const w: FleetWorker = {
        key: r.key,
        url: r.url ?? base?.url ?? null,
        workerId: r.workerId ?? base?.workerId ?? null,
        version: r.version ?? null,
        phase,
        state: r.state ?? null,
        activeSessions: active,
        oldestCallSeconds: active > 0 ? oldest : null,
        oldestCalls: [...sessions].sort((a, b) => b.age_seconds - a.age_seconds).slice(0, 5),
        rejectedJobs: r.rejectedJobs ?? 0,
        droppedSessions: Math.max(r.droppedSessions ?? base?.droppedSessions ?? 0, 0),
        drainStuck: r.drainStuck === true,
        drainStartedAt: r.drainStartedAt ?? null,
        drainPeak: draining ? Math.max(base?.phase === "draining" ? base.drainPeak : 0, active) : 0,
        lastSeen: now,
        misses: 0,
        note: phase === "exited" ? ((r.droppedSessions ?? 0) > 0 ? `closed, dropped ${r.droppedSessions} call(s)` : "exited clean") : "",
        ...(r.sessionsError === undefined ? {} : { sessionsError: r.sessionsError }),
      };
      this.workers.set(r.key, w);
      return;
    }
    if (r.kind === "gone") {
      const w: FleetWorker = prev ?? this.blank(r);
      if (w.phase === "exited") return;
      w.workerId = r.workerId ?? w.workerId;
      w.version = r.version ?? w.version;
      w.activeSessions = r.activeSessions ?? w.activeSessions;
      w.droppedSessions = Math.max(w.droppedSessions, r.droppedSessions ?? 0);
      w.drainStuck = false;
      this.vanish(w);
      this.workers.set(r.key, w);
      return;
    }
    // Not answering.
    if (prev === undefined || prev.lastSeen === null) {
      const w = prev ?? this.blank(r);
      w.misses++;
      w.phase = "unreachable";
      w.note = `unreachable: ${r.error ?? "no answer"}`;
      this.workers.set(r.key, w);
      return;
    }
    if (prev.phase === "exited") return;
    prev.misses++;
    if (prev.misses >= this.goneAfter) {
      this.vanish(prev);
    } else {
      prev.note = `not answering (${r.error ?? "no answer"}), last seen ${prev.state ?? "?"} with ${prev.activeSessions} call(s)`;
    }
  }

  /** A once-seen worker stopped answering: judge it by what it last held. */
  private vanish(w: FleetWorker): void {
    const held = w.activeSessions;
    w.phase = "exited";
    w.drainStuck = false;
    if (held > 0) {
      w.droppedSessions += held;
      w.note = `vanished with ${held} session(s)`;
    } else if (w.droppedSessions > 0) {
      w.note = `exited, dropped ${w.droppedSessions} call(s)`;
    } else {
      w.note = w.state === "serving" || w.state === "starting" ? "gone (last seen serving, no calls)" : "exited clean";
    }
    w.activeSessions = 0;
    w.oldestCallSeconds = null;
    w.oldestCalls = [];
  }

  private blank(r: WorkerReading): FleetWorker {
    return {
      key: r.key,
      url: r.url ?? null,
      workerId: r.workerId ?? null,
      version: r.version ?? null,
      phase: "unreachable",
      state: null,
      activeSessions: 0,
      oldestCallSeconds: null,
      oldestCalls: [],
      rejectedJobs: 0,
      droppedSessions: 0,
      drainStuck: false,
      drainStartedAt: null,
      drainPeak: 0,
      lastSeen: null,
      misses: 0,
      note: "",
    };
  }

  list(): FleetWorker[] {
    return [...this.workers.values()].sort((a, b) => versionKey(a.version).localeCompare(versionKey(b.version)) || a.key.localeCompare(b.key));
  }
}

function versionKey(v: string | null): string {
  return v ?? "\uffff";
}

export interface VersionSummary {
  version: string | null;
  workers: number;
  serving: number;
  draining: number;
  exited: number;
  unreachable: number;
  liveCalls: number;
  /** Calls live on this version's draining workers. */
  drainingCalls: number;
  oldestCallSeconds: number | null;
  rejectedJobs: number;
  droppedCalls: number;
  /** 0..1, how much of this version's drain is done (null when nothing drains). */
  drainProgress: number | null;
  stuckWorkers: number;
}

export type DeployStatus = "done" | "in_progress" | "stuck" | "dropped";

export interface FleetWarning {
  kind: "stuck" | "dropped" | "unreachable" | "sessions";
  worker: string;
  message: string;
}

export interface FleetReport {
  timestamp: number;
  target: string | null;
  status: DeployStatus;
  facts: { allOnTarget: boolean; oldDrainedAndExited: boolean; noCallDropped: boolean };
  /** Why the deploy is not done (or what failed), one line each. */
  reasons: string[];
  versions: VersionSummary[];
  workers: FleetWorker[];
  warnings: FleetWarning[];
  totals: { workers: number; liveCalls: number; droppedCalls: number; unreachable: number };
}

export interface JudgeOptions {
  /** The version the deploy goes to; inferred when exactly one version accepts calls. */
  target?: string;
  /** A drain older than this (seconds) with calls live counts as stuck, besides the worker's own flag. */
  drainTimeoutSeconds?: number;
  now: number;
}

const label = (v: string | null): string => v ?? "(untagged)";

/** Sums the workers per version and judges the deploy against the three facts. */
export function judgeFleet(workers: readonly FleetWorker[], options: JudgeOptions): FleetReport {
  const byVersion = new Map<string | null, VersionSummary>();
  const warnings: FleetWarning[] = [];
  for (const w of workers) {
    let v = byVersion.get(w.version);
    if (v === undefined) {
      v = { version: w.version, workers: 0, serving: 0, draining: 0, exited: 0, unreachable: 0, liveCalls: 0, drainingCalls: 0, oldestCallSeconds: null, rejectedJobs: 0, droppedCalls: 0, drainProgress: null, stuckWorkers: 0 };
      byVersion.set(w.version, v);
    }
    v.workers++;
    v[w.phase]++;
    v.liveCalls += w.activeSessions;
    if (w.phase === "draining") v.drainingCalls += w.activeSessions;
    if (w.oldestCallSeconds !== null) v.oldestCallSeconds = Math.max(v.oldestCallSeconds ?? 0, w.oldestCallSeconds);
    v.rejectedJobs += w.rejectedJobs;
    v.droppedCalls += w.droppedSessions;
    const name = w.workerId ?? w.key;
    const overdue =
      options.drainTimeoutSeconds !== undefined && w.phase === "draining" && w.activeSessions > 0 && w.drainStartedAt !== null && options.now - w.drainStartedAt > options.drainTimeoutSeconds;
    if ((w.drainStuck || overdue) && w.phase === "draining") {
      v.stuckWorkers++;
      const calls = w.oldestCalls.map((s) => `${s.job_id} (${s.tenant}, ${formatAge(s.age_seconds)})`).join(", ");
      const since = w.drainStartedAt === null ? "" : ` draining for ${formatAge(options.now - w.drainStartedAt)},`;
      warnings.push({
        kind: "stuck",
        worker: name,
        message: `drain stuck on ${name} (${label(w.version)}${w.url === null ? "" : `, ${w.url}`}):${since} ${w.activeSessions} call(s) live past the drain timeout${w.oldestCallSeconds === null ? "" : `, oldest ${formatAge(w.oldestCallSeconds)}`}${calls === "" ? (w.sessionsError === undefined ? "" : ` (call ages: ${w.sessionsError})`) : `: ${calls}`}`,
      });
    }
    if (w.droppedSessions > 0) warnings.push({ kind: "dropped", worker: name, message: `${name} (${label(w.version)}) ${w.note !== "" && w.phase === "exited" ? w.note : `dropped ${w.droppedSessions} call(s)`}` });
    if (w.phase === "unreachable") warnings.push({ kind: "unreachable", worker: name, message: `${w.url ?? w.key}: ${w.note.replace(/^unreachable: /, "never reached: ")}` });
  }
  for (const v of byVersion.values()) {
    let peak = 0;
    for (const w of workers) if (w.version === v.version && w.phase === "draining") peak += Math.max(w.drainPeak, w.activeSessions);
    if (v.draining > 0) v.drainProgress = peak === 0 ? 1 : (peak - v.drainingCalls) / peak;
  }
  const versions = [...byVersion.values()].sort((a, b) => versionKey(a.version).localeCompare(versionKey(b.version)));

  const present = workers.filter((w) => w.phase === "serving" || w.phase === "draining");
  const unreachable = workers.filter((w) => w.phase === "unreachable");
  let target = options.target ?? null;
  if (target === null) {
    const accepting = new Set(workers.filter((w) => w.phase === "serving").map((w) => w.version));
    if (accepting.size === 1) target = [...accepting][0] ?? null;
  }
  const dropped = workers.reduce((n, w) => n + w.droppedSessions, 0);
  const reasons: string[] = [];
  const onTarget = target !== null && present.length > 0 && present.every((w) => w.version === target) && workers.some((w) => w.phase === "serving" && w.version === target);
  const old = present.filter((w) => w.version !== target);
  const oldest = old.reduce<number | null>((m, w) => (w.oldestCallSeconds === null ? m : Math.max(m ?? 0, w.oldestCallSeconds)), null);
  if (target === null) reasons.push(`no single version accepts calls (${[...new Set(present.map((w) => label(w.version)))].join(", ") || "no workers"}): pass --version`);
  else {
    if (!workers.some((w) => w.phase === "serving" && w.version === target)) reasons.push(`no ${target} worker is serving`);
    const serving = old.filter((w) => w.phase === "serving");
    if (serving.length > 0) reasons.push(`${serving.length} old-version worker(s) still serving (${[...new Set(serving.map((w) => label(w.version)))].join(", ")})`);
    const draining = old.filter((w) => w.phase === "draining");
    if (draining.length > 0) {
      const left = draining.reduce((n, w) => n + w.activeSessions, 0);
      reasons.push(left > 0 ? `still draining: ${left} call(s) left on ${draining.filter((w) => w.activeSessions > 0).length} worker(s)${oldest === null ? "" : `, oldest ${formatAge(oldest)}`}` : `${draining.length} drained worker(s) not exited yet`);
    }
  }
  if (unreachable.length > 0) reasons.push(`${unreachable.length} worker(s) unreachable: ${unreachable.slice(0, 3).map((w) => w.url ?? w.key).join(", ")}${unreachable.length > 3 ? ", …" : ""}`);
  if (dropped > 0) reasons.unshift(`${dropped} call(s) dropped: ${warnings.filter((w) => w.kind === "dropped").map((w) => w.message).join("; ")}`);
  const stuck = warnings.filter((w) => w.kind === "stuck");
  if (stuck.length > 0) reasons.unshift(...stuck.map((w) => w.message));
  const facts = { allOnTarget: onTarget, oldDrainedAndExited: target !== null && old.length === 0, noCallDropped: dropped === 0 };
  const status: DeployStatus =
    dropped > 0 ? "dropped" : stuck.length > 0 ? "stuck" : facts.allOnTarget && facts.oldDrainedAndExited && unreachable.length === 0 ? "done" : "in_progress";
  return {
    timestamp: options.now,
    target,
    status,
    facts,
    reasons,
    versions,
    workers: [...workers],
    warnings,
    totals: { workers: workers.length, liveCalls: workers.reduce((n, w) => n + w.activeSessions, 0), droppedCalls: dropped, unreachable: unreachable.length },
  };
}

/** `14m02s`, `1h05m`, `42s`. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A text progress bar: `[████████░░░░]`. */
export function progressBar(fraction: number, width = 20): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * width);
  return `[${"█".repeat(full)}${"░".repeat(width - full)}]`;
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [header, ...rows].map((cells) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd());
}

const STATUS_TEXT: Record<DeployStatus, string> = { done: "DONE", in_progress: "IN PROGRESS", stuck: "STUCK", dropped: "CALLS DROPPED" };

/** The human form of a report: per-version table, drain bars, warnings, the three facts. */
export function renderFleet(report: FleetReport, options: { perWorker?: boolean } = {}): string {
  const out: string[] = [];
  out.push(`openrtc fleet · ${report.totals.workers} worker(s) · ${new Date(report.timestamp * 1000).toISOString()}`);
  out.push("");
  out.push(
    ...table(
      ["VERSION", "WORKERS", "SERVING", "DRAINING", "EXITED", "UNREACHABLE", "LIVE", "OLDEST", "REJECTED", "DROPPED"],
      report.versions.map((v) => [
        label(v.version),
        String(v.workers),
        String(v.serving),
        String(v.draining),
        String(v.exited),
        String(v.unreachable),
        String(v.liveCalls),
        v.oldestCallSeconds === null ? "-" : formatAge(v.oldestCallSeconds),
        String(v.rejectedJobs),
        String(v.droppedCalls),
      ]),
    ),
  );
  const drains = report.versions.filter((v) => v.drainProgress !== null);
  if (drains.length > 0) out.push("");
  for (const v of drains) {
    const p = v.drainProgress ?? 0;
    const left = v.drainingCalls === 0 ? "drained, waiting for exit" : `${v.drainingCalls} call(s) left on ${v.draining} worker(s)${v.oldestCallSeconds === null ? "" : `, oldest ${formatAge(v.oldestCallSeconds)}`}`;
    out.push(`drain ${label(v.version)}  ${progressBar(p)} ${String(Math.round(p * 100)).padStart(3)}%  ${left}`);
  }
  if (options.perWorker === true) {
    out.push("");
    out.push(
      ...table(
        ["WORKER", "VERSION", "PHASE", "STATE", "LIVE", "OLDEST", "REJECTED", "DROPPED", "NOTE"],
        report.workers.map((w) => [
          w.workerId ?? w.key,
          label(w.version),
          w.phase,
          w.state ?? "-",
          String(w.activeSessions),
          w.oldestCallSeconds === null ? "-" : formatAge(w.oldestCallSeconds),
          String(w.rejectedJobs),
          String(w.droppedSessions),
          w.note,
        ]),
      ),
    );
  }
  const warnings = report.warnings.filter((w) => w.kind !== "unreachable" || options.perWorker !== true);
  if (warnings.length > 0) out.push("");
  for (const w of warnings) out.push(`! ${w.kind}: ${w.message}`);
  out.push("");
  out.push(`deploy${report.target === null ? "" : ` → ${report.target}`}: ${STATUS_TEXT[report.status]}`);
  const t = report.target ?? "the new version";
  const box = (ok: boolean) => (ok ? "[x]" : "[ ]");
  out.push(`  ${box(report.facts.allOnTarget)} every worker reports ${t}`);
  out.push(`  ${box(report.facts.oldDrainedAndExited)} old-version workers drained to zero and exited`);
  out.push(`  ${box(report.facts.noCallDropped)} no call dropped${report.totals.droppedCalls > 0 ? ` (${report.totals.droppedCalls} dropped)` : ""}`);
  for (const r of report.reasons) out.push(`  - ${r}`);
  return `${out.join("\n")}\n`;
}

/** The `--json` form (snake_case, like the snapshot). */
export function fleetReportJSON(report: FleetReport): Record<string, unknown> {
  return {
    timestamp: report.timestamp,
    target: report.target,
    status: report.status,
    facts: { all_on_target: report.facts.allOnTarget, old_drained_and_exited: report.facts.oldDrainedAndExited, no_call_dropped: report.facts.noCallDropped },
    reasons: report.reasons,
    totals: { workers: report.totals.workers, live_calls: report.totals.liveCalls, dropped_calls: report.totals.droppedCalls, unreachable: report.totals.unreachable },
    versions: report.versions.map((v) => ({
      version: v.version,
      workers: v.workers,
      serving: v.serving,
      draining: v.draining,
      exited: v.exited,
      unreachable: v.unreachable,
      live_calls: v.liveCalls,
      draining_calls: v.drainingCalls,
      oldest_call_seconds: v.oldestCallSeconds,
      rejected_jobs: v.rejectedJobs,
      dropped_calls: v.droppedCalls,
      drain_progress: v.drainProgress,
      stuck_workers: v.stuckWorkers,
    })),
    workers: report.workers.map((w) => ({
      key: w.key,
      url: w.url,
      worker_id: w.workerId,
      deployment_version: w.version,
      phase: w.phase,
      state: w.state,
      active_sessions: w.activeSessions,
      oldest_call_seconds: w.oldestCallSeconds,
      rejected_jobs: w.rejectedJobs,
      dropped_sessions: w.droppedSessions,
      drain_stuck: w.drainStuck,
      drain_started_at: w.drainStartedAt,
      last_seen: w.lastSeen,
      note: w.note,
    })),
    warnings: report.warnings,
  };
}
