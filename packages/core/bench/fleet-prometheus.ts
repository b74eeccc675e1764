// `openrtc fleet status --prometheus` at 10,000 workers: a real Prometheus (the shipped
// openrtc.rules.yml loaded) scraping the contract metrics of 10,000 workers from a few synthetic
// exporters (fleet-prometheus-host.ts: each worker's exact exposition, its own `instance`, kept by
// `honor_labels: true`). Measures the fleet read (prometheusSource().read()) plus judging, against
// one instant query round trip to the same Prometheus: "within one query round trip" means the
// read's wall time is about its slowest query, not the sum of them. Fails if the report does not
// count 10,000 workers with the right per-version numbers.
import { spawn, type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { FleetTracker, judgeFleet, type FleetReport, type WorkerReading } from "../src/fleet.ts";
import { fleetQueries, promQuery, prometheusSource } from "../src/fleet-sources.ts";
import { RULES_FILE, startPrometheus, type PrometheusServer } from "../test/prometheus.ts";
import type { BenchRow } from "./types.ts";

const WORKERS = Number(process.env.OPENRTC_BENCH_WORKERS ?? 10_000);
const EXPORTERS = Number(process.env.OPENRTC_BENCH_EXPORTERS ?? 10);
/** Scrape and rule evaluation interval. */
const INTERVAL = process.env.OPENRTC_BENCH_SCRAPE_INTERVAL ?? "5s";
const RUNS = 5;
const TARGET = "v2";

interface Expected {
  v1: { workers: number; draining: number; calls: number; withCalls: number; rejected: number };
  v2: { workers: number; serving: number; calls: number };
}

interface Host {
  child: ChildProcess;
  targets: string[];
  expected: Expected;
  bytes: number;
  samples: number;
}

async function startHost(): Promise<Host> {
  const script = fileURLToPath(new URL("./fleet-prometheus-host.ts", import.meta.url));
  const child = spawn(process.execPath, [...process.execArgv, script, String(WORKERS), String(EXPORTERS)], { stdio: ["pipe", "pipe", "inherit"] });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`fleet-prometheus host exited ${code}`)));
  });
  return { child, ...(JSON.parse(first) as Omit<Host, "child">) };
}

/** "5s", "1500ms", "1m" → milliseconds. */
function intervalMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(text);
  if (m === null) throw new Error(`OPENRTC_BENCH_SCRAPE_INTERVAL: not a duration like 5s: ${text}`);
  return Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : 60_000);
}

const log = (text: string) => void process.stderr.write(`[fleet-prometheus] ${text}\n`);
const best = (xs: readonly number[]) => Math.min(...xs);
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

function judge(readings: readonly WorkerReading[]): FleetReport {
  const now = Date.now() / 1000;
  const tracker = new FleetTracker();
  tracker.update(readings, now);
  return judgeFleet(tracker.list(), { now, target: TARGET });
}

/** Throws unless the report is the fleet the host serves, to the worker and the call. */
function verify(report: FleetReport, e: Expected, withSessions: boolean): void {
  const problems: string[] = [];
  const check = (what: string, got: unknown, want: unknown) => {
    if (got !== want) problems.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  };
  check("workers", report.totals.workers, e.v1.workers + e.v2.workers);
  check("live calls", report.totals.liveCalls, e.v1.calls + e.v2.calls);
  check("unreachable", report.totals.unreachable, 0);
  check("dropped", report.totals.droppedCalls, 0);
  check("versions", report.versions.map((v) => v.version).join(","), "v1,v2");
  check("target", report.target, TARGET);
  check("status", report.status, "in_progress");
  const v1 = report.versions.find((v) => v.version === "v1");
  const v2 = report.versions.find((v) => v.version === "v2");
  check("v1 workers", v1?.workers, e.v1.workers);
  check("v1 serving", v1?.serving, 0);
  check("v1 draining", v1?.draining, e.v1.draining);
  check("v1 live calls", v1?.liveCalls, e.v1.calls);
  check("v1 draining calls", v1?.drainingCalls, e.v1.calls);
  check("v1 rejected", v1?.rejectedJobs, e.v1.rejected);
  check("v2 workers", v2?.workers, e.v2.workers);
  check("v2 serving", v2?.serving, e.v2.serving);
  check("v2 draining", v2?.draining, 0);
  check("v2 live calls", v2?.liveCalls, e.v2.calls);
  check("v2 rejected", v2?.rejectedJobs, 0);
  check("reason", report.reasons.some((r) => r.startsWith(`still draining: ${e.v1.calls} call(s) left on ${e.v1.withCalls} worker(s)`)), true);
  if (withSessions) {
    // Call ages come from GET /sessions of (at most 50) draining workers holding calls.
    const aged = report.workers.filter((w) => w.oldestCalls.length > 0);
    check("workers with call ages", aged.length, Math.min(50, e.v1.withCalls));
    check("call-age errors", report.workers.filter((w) => w.sessionsError !== undefined).length, 0);
    check("v1 oldest call known", typeof v1?.oldestCallSeconds, "number");
  }
  if (problems.length > 0) throw new Error(`fleet status over Prometheus miscounted the fleet:\n  ${problems.join("\n  ")}`);
}

export async function benchFleetPrometheus(): Promise<BenchRow[]> {
  intervalMs(INTERVAL);
  const t0 = performance.now();
  const host = await startHost();
  let prom: PrometheusServer | undefined;
  const rows: BenchRow[] = [];
  try {
    log(`${WORKERS} workers on ${host.targets.length} exporters (${host.samples} samples, ${(host.bytes / 1e6).toFixed(1)} MB a scrape round) in ${Math.round(performance.now() - t0)} ms`);
    prom = await startPrometheus({ targets: host.targets, ruleFiles: [RULES_FILE], scrapeInterval: INTERVAL, evaluationInterval: INTERVAL, honorLabels: true, readyTimeoutMs: 60_000 });
    const e = host.expected;
    const calls = e.v1.calls + e.v2.calls;
    const p = prom;
    const waitFor = async (expr: string, want: number) => {
      await p.waitFor(expr, (s) => s.length === 1 && s[0]?.value === want, { timeoutMs: 240_000, intervalMs: 1000 });
      log(`${expr} = ${want} after ${Math.round(performance.now() - t0)} ms`);
    };
    await waitFor("count(up == 1)", host.targets.length);
    await waitFor("count(openrtc_worker_info)", WORKERS);
    await waitFor("sum(openrtc:worker_active_sessions)", calls);
    await waitFor("count(openrtc:worker_active_sessions)", WORKERS);

    // A generous timeout: on a shared machine one load spike must not abort the run.
    const queriesOnly = prometheusSource({ url: prom.url, sessions: false, timeoutMs: 60_000 });
    const withSessions = prometheusSource({ url: prom.url, timeoutMs: 60_000 });
    const queries = { up: "up", ...fleetQueries("15m") };
    const names = Object.keys(queries) as Array<keyof typeof queries>;

    // Prometheus' own CPU counter (10 ms resolution; it includes any scrape that lands meanwhile).
    const promCpuMs = async () => {
      const text = await (await fetch(`${p.url}/metrics`)).text();
      const m = /^process_cpu_seconds_total ([0-9.eE+-]+)$/m.exec(text);
      return m === null ? Number.NaN : Number(m[1]) * 1000;
    };
    const fleetRead = async (source: typeof queriesOnly, sessions: boolean) => {
      const p0 = await promCpuMs();
      const c0 = process.cpuUsage();
      const a = performance.now();
      const readings = await source.read();
      const b = performance.now();
      const report = judge(readings);
      const c = performance.now();
      const cpu = process.cpuUsage(c0);
      const promCpu = (await promCpuMs()) - p0;
      verify(report, e, sessions);
      return { read: b - a, judge: c - b, wall: c - a, cpu: (cpu.user + cpu.system) / 1000, promCpu };
    };
    const single = async (expr: string) => {
      const a = performance.now();
      await promQuery(p.url, expr, 60_000);
      return performance.now() - a;
    };

    // The first read after start-up, then RUNS rounds, each reading the fleet both ways and timing
    // every query on its own (one after the other), so load changes hit all figures alike.
    const cold = await fleetRead(queriesOnly, false);
    await fleetRead(withSessions, true);
    // What Prometheus spends with no query running (scraping 10 targets, evaluating the rules),
    // over two scrape intervals: the part of the CPU figures below that is not the queries'.
    const idle0 = await promCpuMs();
    const i0 = performance.now();
    await new Promise((r) => setTimeout(r, 2 * intervalMs(INTERVAL)));
    const idleRate = ((await promCpuMs()) - idle0) / ((performance.now() - i0) / 1000);
    const load0 = loadavg()[0] ?? Number.NaN;
    const fast: Array<Awaited<ReturnType<typeof fleetRead>>> = [];
    const full: Array<Awaited<ReturnType<typeof fleetRead>>> = [];
    const each = new Map<string, number[]>(names.map((n) => [n, []]));
    const fleetNames = names.filter((n) => n !== "up");
    for (let r = 0; r < RUNS; r++) {
      fast.push(await fleetRead(queriesOnly, false));
      full.push(await fleetRead(withSessions, true));
      for (const n of fleetNames) each.get(n)?.push(await single(queries[n]));
      each.get("up")?.push(await single(queries.up));
    }
    const load1 = loadavg()[0] ?? Number.NaN;

    const bestOf = (n: string) => best(each.get(n) ?? []);
    const medianOf = (n: string) => median(each.get(n) ?? []);
    const slowest = fleetNames.reduce((m, n) => (bestOf(n) > bestOf(m) ? n : m));
    const slowestMedian = fleetNames.reduce((m, n) => (medianOf(n) > medianOf(m) ? n : m));
    const sum = fleetNames.reduce((s, n) => s + bestOf(n), 0);
    const sumMedian = fleetNames.reduce((s, n) => s + medianOf(n), 0);
    const wall = best(fast.map((x) => x.wall));
    const wallMedian = median(fast.map((x) => x.wall));
    const k = WORKERS.toLocaleString("en-US");

    rows.push({ name: `fleet status --prometheus over ${k} workers: read (${fleetNames.length} queries at once) + judge, best of ${RUNS}`, value: wall, unit: "ms", goal: "≈ 1 query" });
    rows.push({ name: `  same, median of ${RUNS}`, value: wallMedian, unit: "ms", goal: "≈ 1 query" });
    rows.push({ name: `  of which judging ${k} readings, median`, value: median(fast.map((x) => x.judge)), unit: "ms" });
    rows.push({ name: `  CPU time of the reading process, median`, value: median(fast.map((x) => x.cpu)), unit: "ms" });
    rows.push({ name: `  CPU time of Prometheus during the read, median`, value: median(fast.map((x) => x.promCpu)), unit: "ms" });
    rows.push({ name: `  CPU time of Prometheus per second with no query running (scrapes, rules)`, value: idleRate, unit: "ms/s" });
    rows.push({ name: `  first read after start-up (cold)`, value: cold.wall, unit: "ms" });
    rows.push({ name: `  slowest single query alone (${slowest}), best of ${RUNS}`, value: bestOf(slowest), unit: "ms" });
    rows.push({ name: `  slowest single query alone (${slowestMedian}), median of ${RUNS}`, value: medianOf(slowestMedian), unit: "ms" });
    rows.push({ name: `  sum of the ${fleetNames.length} queries run one by one, best of ${RUNS} each`, value: sum, unit: "ms" });
    rows.push({ name: `  read+judge ÷ slowest single query, bests`, value: wall / bestOf(slowest), unit: "×" });
    rows.push({ name: `  read+judge ÷ slowest single query, medians`, value: wallMedian / medianOf(slowestMedian), unit: "×" });
    rows.push({ name: `  read+judge ÷ sum of the queries, bests`, value: wall / sum, unit: "×" });
    rows.push({ name: `  read+judge ÷ sum of the queries, medians`, value: wallMedian / sumMedian, unit: "×" });
    for (const n of names) rows.push({ name: `  query ${n} alone, median of ${RUNS} (best ${bestOf(n).toFixed(0)} ms)`, value: medianOf(n), unit: "ms" });
    const fullBest = best(full.map((x) => x.wall));
    rows.push({ name: `fleet status --prometheus with call ages (+ GET /snapshot, /sessions of ${Math.min(50, e.v1.withCalls)} draining workers), best of ${RUNS}`, value: fullBest, unit: "ms" });
    rows.push({ name: `  same, median of ${RUNS}`, value: median(full.map((x) => x.wall)), unit: "ms" });
    rows.push({ name: `  machine load average (1 min) before the runs`, value: load0, unit: "" });
    rows.push({ name: `  machine load average (1 min) after the runs`, value: load1, unit: "" });
    rows.push({ name: `  Prometheus: ${host.targets.length} scrape targets, ${host.samples.toLocaleString("en-US")} series, scrape + rule interval ${INTERVAL}`, value: host.samples, unit: "series" });
  } finally {
    await prom?.stop();
    host.child.stdin?.end();
    await new Promise<void>((r) => (host.child.exitCode !== null ? r() : host.child.once("exit", () => r())));
  }
  return rows;
}
