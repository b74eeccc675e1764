// Where `openrtc fleet` reads the fleet from: the workers' own control servers (a list, a file,
// DNS SRV) or Prometheus (the contract metrics and the shipped recording rules).
import { readFile } from "node:fs/promises";
import { Resolver } from "node:dns/promises";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { WorkerReading } from "./fleet.ts";
import type { RuntimeSnapshotJSON } from "./snapshot.ts";
import type { LiveSessionView } from "./sessions.ts";

export interface FleetSource {
  /** What this source reads, for messages. */
  readonly description: string;
  read(): Promise<WorkerReading[]>;
}

export interface DirectSourceOptions {
  /** The worker control URLs to read this time (re-evaluated each poll: files and SRV change). */
  targets: () => Promise<string[]>;
  /** Bearer token for GET /sessions (the drain token). */
  token?: string;
  timeoutMs?: number;
  /** Requests in flight at once. Default 64. */
  concurrency?: number;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** Reads `openrtc_dropped_sessions_total` (unlabelled) out of a text exposition. */
export function droppedFromMetrics(text: string): number | undefined {
  const m = /^openrtc_dropped_sessions_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)/m.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

// node:http with keep-alive agents: at a thousand workers a poll, fetch()'s per-request cost
// (streams, an AbortSignal timer each) was most of the reading process's CPU.
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 4 });
const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 4 });

interface Got {
  status: number;
  body: string;
}

/** GET `path` on `base`; rejects on network errors and after `timeoutMs`. */
export function httpGet(base: string, path: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, base);
    const https = url.protocol === "https:";
    const req = (https ? httpsRequest : httpRequest)(url, { method: "GET", agent: https ? httpsAgent : httpAgent, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
    req.on("error", reject);
    req.end();
  });
}

function netError(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
}

/** Reads one worker: GET /snapshot, then GET /sessions when it holds calls and GET /metrics (the dropped counter) once it closed. */
export async function readWorker(url: string, options: { token?: string; timeoutMs?: number } = {}): Promise<WorkerReading> {
  const timeoutMs = options.timeoutMs ?? 3000;
  let snapshot: RuntimeSnapshotJSON;
  try {
    const res = await httpGet(url, "/snapshot", timeoutMs);
    if (res.status !== 200) return { key: url, url, kind: "unreachable", error: `GET /snapshot: HTTP ${res.status}` };
    snapshot = JSON.parse(res.body) as RuntimeSnapshotJSON;
  } catch (error) {
    return { key: url, url, kind: "unreachable", error: netError(error) };
  }
  const reading: WorkerReading = {
    key: url,
    url,
    kind: "present",
    workerId: snapshot.worker_id,
    version: snapshot.deployment_version,
    state: snapshot.state,
    draining: snapshot.draining,
    activeSessions: snapshot.active_sessions,
    rejectedJobs: snapshot.rejected_jobs,
    drainStuck: snapshot.drain_stuck,
    drainStartedAt: snapshot.drain_started_at,
  };
  // Only a closed pool can have dropped calls (close({ dropLiveSessions })): read its counter then.
  const metrics =
    snapshot.state === "closed"
      ? httpGet(url, "/metrics", timeoutMs)
          .then((res) => (res.status === 200 ? droppedFromMetrics(res.body) : undefined))
          .catch(() => undefined)
      : Promise.resolve(undefined);
  const sessions: Promise<LiveSessionView[] | string> =
    snapshot.active_sessions > 0
      ? httpGet(url, "/sessions", timeoutMs, options.token === undefined ? {} : { authorization: `Bearer ${options.token}` })
          .then((res) => {
            if (res.status === 200) return (JSON.parse(res.body) as { sessions: LiveSessionView[] }).sessions;
            return res.status === 401 || res.status === 403 ? `GET /sessions: HTTP ${res.status}${options.token === undefined ? ", pass --token or OPENRTC_DRAIN_TOKEN" : ", token refused"}` : `GET /sessions: HTTP ${res.status}`;
          })
          .catch((error: unknown) => `GET /sessions: ${netError(error)}`)
      : Promise.resolve([]);
  const [dropped, live] = await Promise.all([metrics, sessions]);
  if (dropped !== undefined) reading.droppedSessions = dropped;
  if (typeof live === "string") reading.sessionsError = live;
  else reading.sessions = live.map((s) => ({ job_id: s.job_id, tenant: s.tenant, age_seconds: s.age_seconds }));
  return reading;
}

export function directSource(options: DirectSourceOptions): FleetSource {
  return {
    description: "workers' control servers",
    read: async () => {
      const urls = [...new Set(await options.targets())];
      return mapLimit(urls, options.concurrency ?? 64, (url) => readWorker(url, options));
    },
  };
}

/** `host:port` or a URL → an http URL with no path. */
export function normalizeWorkerUrl(text: string): string {
  const t = text.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(t) ? t : `http://${t}`;
  if (!URL.canParse(withScheme)) throw new Error(`not a worker URL: ${text}`);
  const u = new URL(withScheme);
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`not an http(s) URL: ${text}`);
  return `${u.protocol}//${u.host}`;
}

/** One URL (or host:port) a line; blank lines and `#` comments are skipped. */
export async function readWorkersFile(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8");
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*/, "").trim())
    .filter((l) => l !== "")
    .map(normalizeWorkerUrl);
}

/** `_openrtc._tcp.workers.example` → one http URL per SRV record (target:port). */
export async function resolveSrvTargets(name: string, options: { servers?: string[]; scheme?: "http" | "https" } = {}): Promise<string[]> {
  const resolver = new Resolver({ timeout: 3000, tries: 2 });
  if (options.servers !== undefined && options.servers.length > 0) resolver.setServers(options.servers);
  const records = await resolver.resolveSrv(name);
  return records
    .sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name) || a.port - b.port)
    .map((r) => {
      const host = r.name.replace(/\.$/, "");
      return `${options.scheme ?? "http"}://${host.includes(":") ? `[${host}]` : host}:${r.port}`;
    });
}

export interface PrometheusSourceOptions {
  url: string;
  /** How far back a worker that stopped being scraped is still remembered (PromQL duration). Default 15m. */
  window?: string;
  /** Restrict to one scrape job. */
  job?: string;
  timeoutMs?: number;
  /** Bearer token for GET /sessions on draining workers (their `instance` is their control server). */
  token?: string;
  /** Read call ages from draining workers' /sessions. Default true. */
  sessions?: boolean;
}

export interface PromInstantSample {
  metric: Record<string, string>;
  value: number;
}
type Sample = PromInstantSample;

/** One instant query (POST /api/v1/query); what each of `fleetQueries` costs on its own. */
export async function promQuery(base: string, expr: string, timeoutMs: number): Promise<Sample[]> {
  const url = new URL("/api/v1/query", base);
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ query: expr }).toString(),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = (await res.json().catch(() => ({ status: "error", error: `HTTP ${res.status}` }))) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  if (body.status !== "success" || body.data === undefined) throw new Error(`Prometheus query failed (${expr.slice(0, 80)}): ${body.error ?? `HTTP ${res.status}`}`);
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/**
 * The PromQL `openrtc fleet` runs, all at once (one round trip). Exported for the docs and tests.
 * Each asks Prometheus for as little as the read needs: the flags and counters only where they
 * differ from 0 (a missing worker reads as 0), and what a worker last held only for workers that
 * are gone. At 10,000 workers every series Prometheus returns costs it and the reader JSON to
 * write and parse, and on a small machine the queries compete for the same cores.
 */
export function fleetQueries(window: string, job?: string): Record<string, string> {
  const sel = job === undefined ? "" : `{job=${JSON.stringify(job)}}`;
  const by = "by (job, instance)";
  const info = `openrtc_worker_info${sel}`;
  return {
    // Every worker seen within the window, with its version and id.
    seen: `group by (job, instance, deployment_version, worker_id) (last_over_time(${info}[${window}]))`,
    present: `group by (job, instance, deployment_version, worker_id) (${info})`,
    // The shipped recording rule: live sessions per worker (0 for a worker with none). With no
    // series at all (rules not loaded, or not evaluated yet) the read falls back to the raw
    // series in a second round (fleetFallbackQueries).
    active: `sum ${by} (openrtc:worker_active_sessions${sel})`,
    // What a worker that is gone last held: raw series, exact (as OpenRTCWorkerVanishedWithSessions).
    lastActive: `sum ${by} (last_over_time(openrtc_active_sessions${sel}[${window}])) > 0 unless on (job, instance) ${info}`,
    draining: `max ${by} (openrtc_draining${sel}) == 1`,
    stuck: `max ${by} (openrtc_drain_stuck${sel}) == 1`,
    rejected: `sum ${by} (openrtc_jobs_rejected_total${sel}) > 0`,
    dropped: `max ${by} (last_over_time(openrtc_dropped_sessions_total${sel}[${window}])) > 0`,
    // Targets down now. Those of a job that has workers but never seen as a worker within the
    // window (not in `seen`) are unreachable; the read does that join on `seen`.
    down: `up${sel} == 0`,
  };
}

/** The second round, run only when the recording rule answered nothing while workers are present. */
export function fleetFallbackQueries(job?: string): Record<string, string> {
  const sel = job === undefined ? "" : `{job=${JSON.stringify(job)}}`;
  return { activeRaw: `sum by (job, instance) (openrtc_active_sessions${sel})` };
}

export function prometheusSource(options: PrometheusSourceOptions): FleetSource {
  const window = options.window ?? "15m";
  const timeoutMs = options.timeoutMs ?? 10_000;
  const queries = fleetQueries(window, options.job);
  const fallback = fleetFallbackQueries(options.job);
  return {
    description: `Prometheus at ${options.url}`,
    read: async () => {
      const names = Object.keys(queries);
      const results = await Promise.all(names.map((n) => promQuery(options.url, queries[n] as string, timeoutMs)));
      const r = Object.fromEntries(names.map((n, i) => [n, results[i] as Sample[]]));
      const key = (m: Record<string, string>) => `${m.job ?? ""}/${m.instance ?? ""}`;
      const index = (samples: Sample[] | undefined) => new Map((samples ?? []).map((s) => [key(s.metric), s.value]));
      const present = new Map((r.present ?? []).map((s) => [key(s.metric), s.metric]));
      const active = index(
        (r.active ?? []).length > 0 || present.size === 0 ? r.active : await promQuery(options.url, fallback.activeRaw as string, timeoutMs),
      );
      const lastActive = index(r.lastActive);
      const draining = index(r.draining);
      const stuck = index(r.stuck);
      const rejected = index(r.rejected);
      const dropped = index(r.dropped);
      const readings: WorkerReading[] = [];
      const seenKeys = new Set<string>();
      // The newest process per address: `seen` may list two worker_ids for one instance.
      for (const s of r.seen ?? []) {
        const k = key(s.metric);
        const now = present.get(k);
        const instance = s.metric.instance ?? "";
        const isCurrent = now !== undefined && now.worker_id === s.metric.worker_id;
        const readingKey = now !== undefined && !isCurrent ? `${k}#${s.metric.worker_id ?? ""}` : k;
        if (seenKeys.has(readingKey)) continue;
        seenKeys.add(readingKey);
        // Each reading written out field by field: an object spread per worker (`{ ...base, … }`)
        // cost Node 20 about 10 µs each, 100 ms of a 10,000-worker read.
        const url = `http://${instance}`;
        const workerId = s.metric.worker_id ?? null;
        const version = s.metric.deployment_version ?? null;
        if (isCurrent) {
          const isDraining = (draining.get(k) ?? 0) === 1;
          const activeSessions = active.get(k) ?? 0;
          readings.push({
            key: readingKey,
            url,
            workerId,
            version,
            kind: "present",
            state: isDraining ? (activeSessions === 0 ? "drained" : "draining") : "serving",
            draining: isDraining,
            activeSessions,
            rejectedJobs: rejected.get(k) ?? 0,
            drainStuck: (stuck.get(k) ?? 0) === 1,
            droppedSessions: dropped.get(k) ?? 0,
          });
        } else if (now === undefined) {
          readings.push({ key: readingKey, url, workerId, version, kind: "gone", activeSessions: lastActive.get(k) ?? 0, droppedSessions: dropped.get(k) ?? 0 });
        } else {
          // Another process answers at this address now: this one was replaced. What it held is
          // not separable in the raw series; the per-worker recording rule keeps the worker_id.
          readings.push({ key: readingKey, url, workerId, version, kind: "gone", activeSessions: 0 });
        }
      }
      // Down targets never seen as a worker, in a job that has workers (not some other exporter's).
      const seenJobs = new Set((r.seen ?? []).map((s) => s.metric.job ?? ""));
      const seenTargets = new Set((r.seen ?? []).map((s) => key(s.metric)));
      for (const s of r.down ?? []) {
        if (!seenJobs.has(s.metric.job ?? "") || seenTargets.has(key(s.metric))) continue;
        readings.push({ key: key(s.metric), url: `http://${s.metric.instance ?? ""}`, kind: "unreachable", error: "Prometheus: up == 0, never scraped a worker there" });
      }
      if (options.sessions !== false) {
        // A second round, all at once: each of these (at most 50) workers is its own server.
        const want = readings.filter((x) => x.kind === "present" && x.draining === true && (x.activeSessions ?? 0) > 0).slice(0, 50);
        await mapLimit(want, want.length, async (x) => {
          const direct = await readWorker(x.url as string, { ...(options.token === undefined ? {} : { token: options.token }), timeoutMs: Math.min(timeoutMs, 2000) });
          if (direct.sessions !== undefined) x.sessions = direct.sessions;
          else x.sessionsError = direct.sessionsError ?? direct.error ?? "not reachable directly";
          if (direct.kind === "present") x.drainStartedAt = direct.drainStartedAt ?? null;
        });
      }
      return readings;
    },
  };
}
