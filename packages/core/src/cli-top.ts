import { parseArgs } from "node:util";
import { EXIT_OK, EXIT_PROBLEM, UsageError } from "./cli-command.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";
import type { LiveSessionView } from "./sessions.ts";
import type { RuntimeSnapshotJSON } from "./snapshot.ts";

const TOP_USAGE = `Usage: openrtc top URL... [--once] [--json] [--interval SECONDS] [--token TOKEN]

A live view of workers (GET URL/snapshot, /sessions and /metrics from their control servers):
version, state, the three deploy signals (deployment_version, draining, active_sessions), live
sessions by tenant and agent with their ages, rejections and the audit backlog per sink.
A deploy is done when every worker reports the new version and the old ones drained to 0
(\`openrtc fleet\` judges that across a fleet).

  URL          a worker's control server, e.g. http://10.0.0.7:8081 (repeat for a fleet)
  --once       print once and exit (1 if any worker could not be read)
  --json       with --once: print the snapshots as a JSON array (each with its sessions and
               audit_backlog)
  --interval   seconds between refreshes (default 2)
  --token      bearer token for GET /sessions when the worker requires one
               (default $OPENRTC_DRAIN_TOKEN)

Keys (live view in a terminal):
  q, Ctrl-C    quit
  s            sort sessions: age → tenant → agent → room
  /            filter sessions (type text, Enter to apply, Esc to clear)
  n, Tab       next worker (p: previous)
  r            refresh now
`;

export interface AuditBacklog {
  /** Records queued or in flight, not yet acknowledged, per sink (openrtc_audit_queue_depth). */
  queued: Record<string, number>;
  /** Records a sink's overflow dropped (openrtc_audit_records_dropped_total). */
  dropped: Record<string, number>;
  /** Failed writes per sink (openrtc_audit_sink_errors_total). */
  errors: Record<string, number>;
}

export type Row = {
  url: string;
  snapshot?: RuntimeSnapshotJSON;
  error?: string;
  /** Live sessions, oldest first (GET /sessions), when readable. */
  sessions?: LiveSessionView[];
  sessionsError?: string;
  audit?: AuditBacklog;
};

function errorText(error: unknown): string {
  return error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
}

/** `name{sink="x"} 3` lines of a text exposition → {x: 3}. */
export function bySink(text: string, metric: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${metric}\\{([^}]*)\\}\\s+([0-9.eE+-]+)`, "gm");
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const sink = /sink="((?:[^"\\]|\\.)*)"/.exec(m[1] ?? "")?.[1];
    if (sink !== undefined) out[sink] = Number(m[2]);
  }
  return out;
}

async function read(url: string, timeoutMs: number, token?: string): Promise<Row> {
  let row: Row;
  try {
    const res = await fetch(new URL("/snapshot", url), { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { url, error: `HTTP ${res.status}` };
    row = { url, snapshot: (await res.json()) as RuntimeSnapshotJSON };
  } catch (error) {
    return { url, error: errorText(error) };
  }
  const [sessions, metrics] = await Promise.all([
    fetch(new URL("/sessions", url), { signal: AbortSignal.timeout(timeoutMs), ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }) })
      .then(async (res) => {
        if (res.ok) return ((await res.json()) as { sessions: LiveSessionView[] }).sessions;
        await res.body?.cancel();
        return `HTTP ${res.status}${res.status === 401 || res.status === 403 ? (token === undefined ? " (pass --token)" : " (token refused)") : ""}`;
      })
      .catch((error: unknown) => errorText(error)),
    fetch(new URL("/metrics", url), { signal: AbortSignal.timeout(timeoutMs) })
      .then(async (res) => (res.ok ? res.text() : (await res.body?.cancel(), undefined)))
      .catch(() => undefined),
  ]);
  if (typeof sessions === "string") row.sessionsError = sessions;
  else row.sessions = sessions;
  if (metrics !== undefined) {
    row.audit = { queued: bySink(metrics, "openrtc_audit_queue_depth"), dropped: bySink(metrics, "openrtc_audit_records_dropped_total"), errors: bySink(metrics, "openrtc_audit_sink_errors_total") };
  }
  return row;
}

function table(header: string[], body: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  return [line(header), ...body.map(line)];
}

/** Renders snapshots as a fixed-width table (exported for tests and embedding). */
export function renderTop(rows: readonly Row[]): string {
  const header = ["WORKER", "VERSION", "STATE", "DRAINING", "ACTIVE", "STARTED", "FAILED", "REJECTED", "STUCK", "MEMBER"];
  const body = rows.map(({ url, snapshot: s, error }) =>
    s === undefined
      ? [url, "-", `unreachable: ${error ?? ""}`, "", "", "", "", "", "", ""]
      : [
          s.worker_id,
          s.deployment_version ?? "(untagged)",
          s.state,
          String(s.draining),
          String(s.active_sessions),
          String(s.total_sessions_started),
          String(s.total_session_failures),
          String(s.rejected_jobs),
          s.drain_stuck ? "STUCK" : "-",
          String(s.member),
        ],
  );
  const byVersion = new Map<string, number>();
  for (const { snapshot: s } of rows) {
    if (s !== undefined) byVersion.set(s.deployment_version ?? "(untagged)", (byVersion.get(s.deployment_version ?? "(untagged)") ?? 0) + s.active_sessions);
  }
  const totals = [...byVersion].map(([v, n]) => `${v}: ${n} live`).join(", ");
  return `${table(header, body).join("\n")}\n${totals === "" ? "" : `\n${totals}\n`}`;
}

export type SortKey = "age" | "tenant" | "agent" | "room";
export const SORT_KEYS: readonly SortKey[] = ["age", "tenant", "agent", "room"];

export interface ViewState {
  sort: SortKey;
  filter: string;
  selected: number;
  /** Text being typed after `/`, or null when not editing the filter. */
  editing: string | null;
}

function age(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Sessions filtered (substring of job, tenant, agent or room) and sorted as `view` says. */
export function viewSessions(sessions: readonly LiveSessionView[], view: Pick<ViewState, "sort" | "filter">): LiveSessionView[] {
  const f = view.filter.toLowerCase();
  const kept = f === "" ? [...sessions] : sessions.filter((s) => [s.job_id, s.tenant, s.agent_name, s.room_name].some((x) => x.toLowerCase().includes(f)));
  const field: Record<SortKey, (s: LiveSessionView) => string> = { age: () => "", tenant: (s) => s.tenant, agent: (s) => s.agent_name, room: (s) => s.room_name };
  return kept.sort((a, b) => field[view.sort](a).localeCompare(field[view.sort](b)) || b.age_seconds - a.age_seconds || a.job_id.localeCompare(b.job_id));
}

/** One worker in detail: state, counts by tenant and agent, sessions with ages, audit backlog. */
export function renderWorker(row: Row, view: Pick<ViewState, "sort" | "filter">, options: { maxSessions?: number } = {}): string {
  const s = row.snapshot;
  if (s === undefined) return `${row.url}: unreachable: ${row.error ?? ""}\n`;
  const out: string[] = [];
  const drain = s.draining ? ` · draining${s.drain_started_at === null ? "" : ` since ${age(s.timestamp - s.drain_started_at)} ago`}` : "";
  out.push(`${s.worker_id} · ${s.deployment_version ?? "(untagged)"} · ${s.state}${drain}${s.drain_stuck ? " · DRAIN STUCK" : ""} · ${s.member ? "member" : "NOT A MEMBER"} · up ${age(s.uptime_seconds)} · ${row.url}`);
  out.push(`live ${s.active_sessions} · started ${s.total_sessions_started} · failed ${s.total_session_failures} · rejected ${s.rejected_jobs}`);
  const sessions = row.sessions ?? [];
  const oldestBy = (key: "tenant" | "agent_name", name: string) => {
    const ages = sessions.filter((x) => x[key] === name).map((x) => x.age_seconds);
    return ages.length === 0 ? "-" : age(Math.max(...ages));
  };
  const tenants = Object.entries(s.sessions_by_tenant).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const agents = Object.entries(s.sessions_by_agent).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  out.push("");
  out.push(...table(["TENANT", "LIVE", "OLDEST"], tenants.map(([t, n]) => [t, String(n), oldestBy("tenant", t)])));
  out.push("");
  out.push(...table(["AGENT", "LIVE", "OLDEST"], agents.map(([a, n]) => [a === "" ? "(unnamed)" : a, String(n), oldestBy("agent_name", a)])));
  out.push("");
  if (row.sessions === undefined) {
    out.push(`sessions: ${row.sessionsError ?? "not read"}`);
  } else {
    const shown = viewSessions(sessions, view);
    const max = options.maxSessions ?? Number.POSITIVE_INFINITY;
    out.push(`sessions (${shown.length}${view.filter === "" ? "" : ` of ${sessions.length} matching "${view.filter}"`}, sorted by ${view.sort})`);
    out.push(...table(["AGE", "JOB", "TENANT", "AGENT", "ROOM"], shown.slice(0, max).map((x) => [age(x.age_seconds), x.job_id, x.tenant, x.agent_name, x.room_name])));
    if (shown.length > max) out.push(`… ${shown.length - max} more`);
  }
  out.push("");
  const audit = row.audit;
  if (audit === undefined) out.push("audit backlog: metrics not read");
  else {
    const sinks = [...new Set([...Object.keys(audit.queued), ...Object.keys(audit.dropped), ...Object.keys(audit.errors)])].sort();
    if (sinks.length === 0) out.push("audit backlog: no sinks");
    else out.push(`audit backlog: ${sinks.map((k) => `${k} ${audit.queued[k] ?? 0} queued${(audit.dropped[k] ?? 0) > 0 ? `, ${audit.dropped[k]} dropped` : ""}${(audit.errors[k] ?? 0) > 0 ? `, ${audit.errors[k]} errors` : ""}`).join(" · ")}`);
  }
  return `${out.join("\n")}\n`;
}

/** The whole live screen: the fleet table, the selected worker, the key help line. */
export function renderScreen(rows: readonly Row[], view: ViewState, size: { columns: number; rows: number }, now = new Date()): string {
  const selected = rows[Math.min(view.selected, rows.length - 1)] ?? rows[0];
  const head = `openrtc top · ${now.toISOString()} · worker ${Math.min(view.selected, rows.length - 1) + 1}/${rows.length}`;
  const fleet = rows.length > 1 ? renderTop(rows).trimEnd().split("\n") : [];
  const fixed = 2 + fleet.length + (fleet.length > 0 ? 1 : 0) + 2;
  const detail = selected === undefined ? [] : renderWorker(selected, view, { maxSessions: Math.max(1, size.rows - fixed - 20) }).trimEnd().split("\n");
  const help = view.editing !== null ? `filter: ${view.editing}▏ (Enter apply, Esc clear)` : `q quit · s sort (${view.sort}) · / filter${view.filter === "" ? "" : ` ("${view.filter}")`} · n/p worker · r refresh`;
  const lines = [head, "", ...fleet, ...(fleet.length > 0 ? [""] : []), ...detail];
  const body = lines.slice(0, Math.max(1, size.rows - 2));
  return [...body, "", help].map((l) => (l.length > size.columns ? `${l.slice(0, Math.max(0, size.columns - 1))}…` : l)).join("\r\n");
}

/** Applies one key press to the view. Returns "quit", "refresh" or undefined. */
export function handleKey(view: ViewState, key: string, workers: number): "quit" | "refresh" | undefined {
  if (view.editing !== null) {
    if (key === "\r" || key === "\n") {
      view.filter = view.editing;
      view.editing = null;
    } else if (key === "\x1b") {
      view.filter = "";
      view.editing = null;
    } else if (key === "\x7f" || key === "\b") view.editing = view.editing.slice(0, -1);
    else if (key === "\x03") return "quit";
    else if (key >= " " && !key.startsWith("\x1b")) view.editing += key;
    return undefined;
  }
  switch (key) {
    case "q":
    case "\x03":
      return "quit";
    case "s":
      view.sort = SORT_KEYS[(SORT_KEYS.indexOf(view.sort) + 1) % SORT_KEYS.length] ?? "age";
      return undefined;
    case "/":
      view.editing = "";
      return undefined;
    case "\x1b":
      view.filter = "";
      return undefined;
    case "n":
    case "\t":
      view.selected = (view.selected + 1) % Math.max(1, workers);
      return undefined;
    case "p":
      view.selected = (view.selected - 1 + Math.max(1, workers)) % Math.max(1, workers);
      return undefined;
    case "r":
      return "refresh";
    default:
      return undefined;
  }
}

interface TtyInput {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  on(event: "data", listener: (chunk: Buffer | string) => void): unknown;
  off(event: "data", listener: (chunk: Buffer | string) => void): unknown;
  resume?(): unknown;
  pause?(): unknown;
}

async function runTop(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { once: { type: "boolean" }, json: { type: "boolean" }, interval: { type: "string" }, token: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${TOP_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout(TOP_USAGE);
    return EXIT_OK;
  }
  if (positionals.length === 0) throw new UsageError(`name at least one worker control URL\n\n${TOP_USAGE}`);
  for (const url of positionals) {
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new UsageError(`not an http(s) URL: ${url}`);
  }
  const interval = values.interval === undefined ? 2 : Number(values.interval);
  if (!(interval > 0)) throw new UsageError(`--interval must be a positive number of seconds, got ${values.interval}`);
  if (values.json === true && values.once !== true) throw new UsageError("--json goes with --once");
  const token = values.token ?? (io.env.OPENRTC_DRAIN_TOKEN === "" ? undefined : io.env.OPENRTC_DRAIN_TOKEN);

  const poll = () => Promise.all(positionals.map((u) => read(u, Math.max(500, interval * 1000), token)));
  if (values.once === true) {
    const rows = await poll();
    if (values.json === true) {
      io.stdout(`${JSON.stringify(rows.map((r) => (r.snapshot === undefined ? { url: r.url, error: r.error } : { ...r.snapshot, sessions: r.sessions ?? null, ...(r.sessionsError === undefined ? {} : { sessions_error: r.sessionsError }), audit_backlog: r.audit ?? null })))}\n`);
    } else {
      const view = { sort: "age" as const, filter: "" };
      io.stdout(`${renderTop(rows)}${rows.map((r) => `\n${renderWorker(r, view)}`).join("")}`);
    }
    return rows.every((r) => r.snapshot !== undefined) ? EXIT_OK : EXIT_PROBLEM;
  }

  const input = io.stdin as unknown as TtyInput | undefined;
  const interactive = input?.isTTY === true && typeof input.setRawMode === "function";
  const size = () => ({ columns: process.stdout.columns ?? 120, rows: process.stdout.rows ?? 40 });
  const view: ViewState = { sort: "age", filter: "", selected: 0, editing: null };
  let rows: Row[] = [];
  let wake: (() => void) | undefined;
  let quit = false;
  const draw = () => io.stdout(`\x1b[H\x1b[2J${renderScreen(rows, view, size())}`);
  const onKey = (chunk: Buffer | string) => {
    const text = chunk.toString();
    // One escape sequence (an arrow key) is one key; anything else is read char by char.
    const keys = text.startsWith("\x1b[") ? [] : text === "\x1b" ? ["\x1b"] : [...text];
    for (const key of keys) {
      const action = handleKey(view, key, positionals.length);
      if (action === "quit") quit = true;
      if (action !== undefined) wake?.();
    }
    if (!quit) draw();
  };
  if (interactive) {
    input?.setRawMode?.(true);
    input?.on("data", onKey);
    input?.resume?.();
    io.stdout("\x1b[?1049h\x1b[?25l");
  }
  const onResize = () => draw();
  process.stdout.on("resize", onResize);
  try {
    while (!quit) {
      rows = await poll();
      if (quit) break;
      if (interactive) draw();
      else io.stdout(`\x1b[2J\x1b[H${new Date().toISOString()}\n\n${renderTop(rows)}${rows.map((r) => `\n${renderWorker(r, view)}`).join("")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, interval * 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    process.stdout.off("resize", onResize);
    if (interactive) {
      input?.off("data", onKey);
      input?.setRawMode?.(false);
      input?.pause?.();
      io.stdout("\x1b[?25h\x1b[?1049l");
    }
  }
  return EXIT_OK;
}

export const topCommand: CliCommand = { summary: "a live view of workers: version, state, sessions with ages, rejections, audit backlog", usage: TOP_USAGE, run: runTop };
