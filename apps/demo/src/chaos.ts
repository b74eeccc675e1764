// `pnpm chaos`: the demo's blue-green deploy and rollback under a long call stream, with faults
// injected at seeded random moments, judged by the callers:
//   - SIGTERM mid-assignment: each drain signals its workers right after a job was assigned to one
//   - two workers draining at once (every drain retires a version's two workers together)
//   - a job process SIGKILLed mid-call (its call is cut short, and counted as caused by the kill)
//   - the dispatcher dropping a worker's socket (LiveKit then sees a new worker id)
//   - a worker's audit sink failing for a while
//   - a worker reporting load 1 (full) for a while
// It prints the calls' fates, the jobs accepted after their worker's drain began (must be 0),
// calls cut short other than by an injected kill (must be 0), and call setup latency
// (dispatch → the agent's entry) in steady state and during a switch.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { isMainModule } from "@openrtc/core";
import type { Dispatcher, JobRecord } from "@openrtc/livekit-dispatcher";
import { EmbeddedBackend, type CallBackend } from "./backend.ts";
import { buildSchedule, mulberry32 } from "./calls.ts";
import type { PhaseMark } from "./coordinator.ts";
import type { Fleet, WorkerProcess } from "./fleet.ts";
import { runDemo, type DemoIo, type DemoSummary } from "./main.ts";

export const CHAOS_USAGE = `usage: pnpm chaos [-- --calls N] [--seed S] [--json]

  --calls N   simulated calls (default 1000, 10–5000)
  --seed S    integer seed: the call schedule, the faults' moments and targets (default 1)
  --json      print only the report, as one JSON object, on stdout`;

/** Room, in workers' worth of calls, the other serving members must have before a capacity fault. */
const CAPACITY_HEADROOM = 0.5;
/**
 * Calls at which a chaos worker reports itself full (the demo's default is 4): sized so that with
 * one member out, the other still has room for the calls in flight at the run's pace.
 */
const CHAOS_CALLS_PER_WORKER = "8";

export const FAULT_KINDS = ["kill_job_process", "drop_socket", "audit_fail", "overload"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Injection {
  /** ms since the run started */
  atMs: number;
  fault: FaultKind;
  worker: string;
  /** kill_job_process: the call whose job process was killed. */
  jobId?: string;
}

export interface ChaosReport {
  ok: boolean;
  seed: number;
  calls_started: number;
  calls_completed: number;
  calls_cut_short: number;
  calls_cut_short_by_cause: Record<string, number>;
  /** Cut short because the run killed their job process on purpose. */
  calls_cut_by_injected_kill: number;
  /** Cut short for any other reason (a drain, a dropped socket, a job process that never started in time, ...): must be 0. */
  calls_cut_otherwise: number;
  /** Of those, cut short on a worker whose drain had begun: must be 0. */
  calls_cut_by_drain: number;
  /** Calls whose job process the run killed that were judged completed anyway: must be 0. */
  calls_killed_but_completed: number;
  calls_unplaced: number;
  calls_abandoned: number;
  not_run_by_reason: Record<string, number>;
  /** Jobs a worker accepted after its drain began: must be 0. */
  jobs_accepted_after_drain: number;
  /** Drains whose SIGTERM came right after a job was assigned to one of the drained workers. */
  drains_mid_assignment: number;
  faults_injected: Record<FaultKind, number>;
  /** Every call not completed and not cut by an injected kill, with when (ms into the run) and why. */
  calls_lost: { job: string; fate: string; reason?: string; at_ms: number }[];
  /** Every fault injected: when (ms into the run), which, on what. */
  injections: { at_ms: number; fault: FaultKind; worker: string; job?: string }[];
  setup_latency_ms: { steady: Percentiles; switch: Percentiles; ratio_p99_switch_over_steady: number | null };
  demo_ok: boolean;
  demo_error?: string;
  audit_verified: boolean;
  duration_seconds: number;
  run_dir: string;
}

export interface Percentiles {
  n: number;
  p50: number | null;
  p99: number | null;
}

export interface ChaosOptions {
  calls: number;
  seed: number;
  /** Pause between two faults, ms (seeded, uniform). Default 3000–8000. */
  faultGapMs?: [number, number];
  /** Pause between two calls, ms (seeded, uniform). Default 2200–3000. */
  gapMs?: [number, number];
}

/** Runs the chaos scenario; resolves with its report. */
export async function runChaos(options: ChaosOptions, io: DemoIo): Promise<ChaosReport> {
  const random = mulberry32(options.seed ^ 0x5eed);
  const [gapLo, gapHi] = options.faultGapMs ?? [3000, 8000];
  const injections: Injection[] = [];
  let midAssignment = 0;
  let backendRef: EmbeddedBackend | undefined;
  const t0 = Date.now();
  const run = await runDemo(
    { calls: options.calls, seed: options.seed, json: true, auditFile: undefined, help: false },
    undefined,
    io,
    {
      // Longer calls than the demo's: more of them in flight at every drain and every fault. Paced
      // at about one call every 2.6 s: each call starts a job process (about 1.7 s of CPU), and
      // once a 2-core machine is saturated by starts, the SDK's queue of accepted calls waiting
      // for a process grows without bound (measured at one call every 1.9 s with other work on
      // the machine: dispatch → entry went from 0.2 s to 50 s within two minutes).
      schedule: buildSchedule({ calls: options.calls, seed: options.seed, minDurationMs: 2000, maxDurationMs: 10_000, minGapMs: options.gapMs?.[0] ?? 2200, maxGapMs: options.gapMs?.[1] ?? 3000 }),
      // Retire the old version by SIGTERM first (the manifest follows), so the signal can land
      // while a job is being assigned to it.
      signalBeforeSwitch: true,
      workerEnv: { OPENRTC_CALLS_PER_WORKER: io.env.OPENRTC_CALLS_PER_WORKER ?? process.env.OPENRTC_CALLS_PER_WORKER ?? CHAOS_CALLS_PER_WORKER },
      // SIGTERM right after a job was assigned to one of the workers being retired (bounded wait).
      beforeSignal: async (workers) => {
        const ids = new Set(workers.flatMap((w) => w.workerIds));
        const d = backendRef?.dispatcher;
        if (d === undefined) return;
        const assigned = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => done(false), 10_000);
          const on = (job: JobRecord) => {
            if (job.workerId !== undefined && ids.has(job.workerId)) done(true);
          };
          const done = (hit: boolean) => {
            clearTimeout(timer);
            d.events.off("job_assigned", on);
            resolve(hit);
          };
          d.events.on("job_assigned", on);
        });
        if (assigned) midAssignment++;
      },
      onRunning: ({ backend, fleet, markerDir, note }) => {
        if (backend instanceof EmbeddedBackend) backendRef = backend;
        return injectFaults({ backend, fleet, markerDir, note, random, gap: [gapLo, gapHi], injections, t0 });
      },
    },
  );
  const killed = new Set(injections.flatMap((i) => (i.jobId === undefined ? [] : [i.jobId])));
  const s: DemoSummary = run.summary;
  const cutShort = run.jobs.filter((j) => j.fate === "cut_short");
  const cutByKill = cutShort.filter((j) => killed.has(j.id)).length;
  // Cut short (not by an injected kill) on a worker whose drain had begun before the call ended.
  const cutByDrain = cutShort.filter((j) => {
    if (killed.has(j.id) || j.endedAt === undefined) return false;
    const w = run.workers.find((x) => j.workerId !== undefined && x.workerIds.includes(j.workerId));
    return w?.drainStartedAt !== undefined && w.drainStartedAt < j.endedAt;
  }).length;
  const killedButCompleted = run.jobs.filter((j) => killed.has(j.id) && j.fate === "completed").length;
  const windows = switchWindows(run.phases);
  const steady: number[] = [];
  const during: number[] = [];
  for (const job of run.jobs) {
    const marker = join(run.markerDir, `${job.id}.started`);
    if (!existsSync(marker)) continue;
    const setup = statSync(marker).mtimeMs - job.createdAt * 1000;
    const at = job.createdAt * 1000;
    (windows.some(([a, b]) => at >= a && at < b) ? during : steady).push(setup);
  }
  const steadyP = percentiles(steady);
  const switchP = percentiles(during);
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, injections.filter((i) => i.fault === k).length])) as Record<FaultKind, number>;
  const report: ChaosReport = {
    ok: false,
    seed: options.seed,
    calls_started: s.calls_started,
    calls_completed: s.calls_completed,
    calls_cut_short: s.calls_cut_short,
    calls_cut_short_by_cause: s.calls_cut_short_by_cause,
    calls_cut_by_injected_kill: cutByKill,
    calls_cut_otherwise: cutShort.length - cutByKill,
    calls_cut_by_drain: cutByDrain,
    calls_killed_but_completed: killedButCompleted,
    calls_unplaced: s.jobs_unplaced,
    calls_abandoned: s.jobs_abandoned,
    not_run_by_reason: s.jobs_not_run_by_reason,
    jobs_accepted_after_drain: acceptedAfterDrain(run.jobs, run.workers),
    drains_mid_assignment: midAssignment,
    faults_injected: faults,
    calls_lost: run.jobs
      .filter((j) => j.fate !== "completed" && !(j.fate === "cut_short" && killed.has(j.id)))
      .map((j) => ({ job: j.id, fate: j.fate ?? "running", ...(j.endReason === undefined ? {} : { reason: j.endReason }), at_ms: Math.round(j.createdAt * 1000 - t0) })),
    injections: injections.map((i) => ({ at_ms: i.atMs, fault: i.fault, worker: i.worker, ...(i.jobId === undefined ? {} : { job: i.jobId }) })),
    setup_latency_ms: {
      steady: steadyP,
      switch: switchP,
      ratio_p99_switch_over_steady: steadyP.p99 !== null && switchP.p99 !== null ? round(switchP.p99 / steadyP.p99, 3) : null,
    },
    demo_ok: s.ok,
    ...(s.error === undefined ? {} : { demo_error: s.error }),
    audit_verified: s.audit_verified,
    duration_seconds: s.duration_seconds,
    run_dir: run.runDir,
  };
  // Every call either completed or was cut by a kill the run injected on purpose; nothing else.
  report.ok =
    s.error === undefined &&
    s.audit_verified &&
    report.calls_cut_otherwise === 0 &&
    report.calls_killed_but_completed === 0 &&
    report.jobs_accepted_after_drain === 0 &&
    report.calls_unplaced + report.calls_abandoned === 0 &&
    report.calls_completed + report.calls_cut_by_injected_kill === report.calls_started;
  return report;
}

interface InjectorContext {
  backend: CallBackend;
  fleet: Fleet;
  markerDir: string;
  note: (line: string) => void;
  random: () => number;
  gap: [number, number];
  injections: Injection[];
  t0: number;
}

/**
 * Injects one fault after another, cycling through the kinds (so each appears) at seeded random
 * moments and on seeded random targets, until stopped. Only serving workers are targets.
 *
 * A dropped socket and a worker reporting full both take capacity away, and LiveKit drops a call
 * that arrives while no worker has room ("no workers with sufficient capacity"). That loss would
 * measure how the fleet was sized, not how a deploy behaves, so the run keeps headroom the way
 * an operator would: one capacity fault at a time, and only while the other serving members have
 * room for at least CAPACITY_HEADROOM of a worker's calls between them.
 */
function injectFaults(c: InjectorContext): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  // Until when the last capacity fault (overload, dropped socket) is taken to last.
  let capacityFaultUntil = 0;
  let next = 0;
  const pick = <T>(xs: readonly T[]): T | undefined => (xs.length === 0 ? undefined : xs[Math.floor(c.random() * xs.length)]);
  const serving = () => c.fleet.live().filter((w) => w.snapshot?.state === "serving" && w.snapshot.member);
  /** The room for calls, in workers' worth, that serving members other than `target` report to LiveKit. */
  const spareWithout = (d: Dispatcher, target: WorkerProcess): number => {
    const ids = new Set(serving().filter((w) => w !== target).flatMap((w) => w.workerIds));
    return d
      .workers()
      .filter((v) => ids.has(v.id) && v.connected && !v.gone && v.status === "available")
      .reduce((sum, v) => sum + Math.max(0, 1 - v.load), 0);
  };
  const capacityTarget = (d: Dispatcher): WorkerProcess | undefined => {
    if (Date.now() < capacityFaultUntil) return undefined;
    return pick(serving().filter((w) => spareWithout(d, w) >= CAPACITY_HEADROOM));
  };
  const record = (fault: FaultKind, w: WorkerProcess, jobId?: string) => {
    c.injections.push({ atMs: Date.now() - c.t0, fault, worker: w.name, ...(jobId === undefined ? {} : { jobId }) });
    c.note(`chaos: ${fault} → ${w.name}${jobId === undefined ? "" : ` (${jobId})`}`);
  };
  const inject = (fault: FaultKind): boolean => {
    const d = c.backend instanceof EmbeddedBackend ? c.backend.dispatcher : undefined;
    if (d === undefined) return false;
    switch (fault) {
      case "kill_job_process": {
        // A call whose agent is on the line: its job process (not the worker) is killed.
        // Only calls with seconds of talk left, so the kill is clearly mid-call.
        const nowS = Date.now() / 1000;
        const running = d.jobs().filter((j) => j.state === "running" && j.workerId !== undefined && j.agentJoinedAt !== undefined && j.agentJoinedAt + (j.talkMs ?? 0) / 1000 - nowS > 1.5);
        const job = pick(running);
        const w = job && c.fleet.live().find((x) => x.workerIds.includes(job.workerId!));
        const marker = job && join(c.markerDir, `${job.id}.started`);
        if (job === undefined || w === undefined || marker === undefined || !existsSync(marker)) return false;
        const pid = Number(readFileSync(marker, "utf8"));
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          return false;
        }
        record(fault, w, job.id);
        return true;
      }
      case "drop_socket": {
        const w = capacityTarget(d);
        const id = w?.workerIds.at(-1);
        if (w === undefined || id === undefined || d.worker(id)?.connected !== true) return false;
        // The SDK reconnects and registers again within a few seconds.
        capacityFaultUntil = Date.now() + 6000;
        d.dropConnection(id);
        record(fault, w);
        return true;
      }
      case "audit_fail": {
        const w = pick(c.fleet.live());
        if (w === undefined) return false;
        w.send({ type: "chaos", fault: "audit_fail", ms: 3000 });
        record(fault, w);
        return true;
      }
      case "overload": {
        const w = capacityTarget(d);
        if (w === undefined) return false;
        capacityFaultUntil = Date.now() + 6000;
        w.send({ type: "chaos", fault: "overload", ms: 5000 });
        record(fault, w);
        return true;
      }
    }
  };
  const tick = () => {
    if (stopped) return;
    // Try each kind in turn from the next one; a kind with no target now is skipped this time.
    for (let i = 0; i < FAULT_KINDS.length; i++) {
      const fault = FAULT_KINDS[(next + i) % FAULT_KINDS.length]!;
      if (inject(fault)) {
        next = (next + i + 1) % FAULT_KINDS.length;
        break;
      }
    }
    timer = setTimeout(tick, c.gap[0] + c.random() * (c.gap[1] - c.gap[0]));
  };
  timer = setTimeout(tick, c.gap[0]);
  return {
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

/** From each switch (a drain phase beginning) until the next phase: when traffic moves between versions. */
export function switchWindows(phases: readonly PhaseMark[]): [number, number][] {
  const out: [number, number][] = [];
  phases.forEach((p, i) => {
    if (p.phase !== "drain_v1" && p.phase !== "drain_v2") return;
    out.push([p.at, phases[i + 1]?.at ?? Number.POSITIVE_INFINITY]);
  });
  return out;
}

/** Offers a worker accepted after its own drain began (its audit's drain_started), across its registrations. */
export function acceptedAfterDrain(jobs: readonly JobRecord[], workers: readonly WorkerProcess[]): number {
  let n = 0;
  for (const w of workers) {
    if (w.drainStartedAt === undefined) continue;
    for (const job of jobs) {
      for (const offer of job.offers) {
        if (offer.answer === "accepted" && w.workerIds.includes(offer.workerId) && offer.at > w.drainStartedAt) n++;
      }
    }
  }
  return n;
}

export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { n: 0, p50: null, p99: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!, 1);
  return { n: sorted.length, p50: at(50), p99: at(99) };
}

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

export function formatChaos(r: ChaosReport): string {
  const causes = Object.entries(r.calls_cut_short_by_cause).map(([c, n]) => `${c}: ${n}`).join(", ");
  const lat = r.setup_latency_ms;
  return [
    "",
    `openrtc chaos ${r.ok ? "OK" : "FAILED"} in ${r.duration_seconds} s (seed ${r.seed})`,
    `  calls: ${r.calls_started} started, ${r.calls_completed} completed, ${r.calls_cut_short} cut short${causes ? ` (${causes})` : ""}, ${r.calls_unplaced} unplaced, ${r.calls_abandoned} abandoned`,
    `  cut short by an injected job-process kill: ${r.calls_cut_by_injected_kill}; otherwise (must be 0): ${r.calls_cut_otherwise}, of which on a draining worker: ${r.calls_cut_by_drain}; killed yet judged completed (must be 0): ${r.calls_killed_but_completed}`,
    `  jobs accepted after their worker's drain began (must be 0): ${r.jobs_accepted_after_drain}`,
    `  faults: ${Object.entries(r.faults_injected).map(([k, n]) => `${k} ${n}`).join(", ")}; drains signalled mid-assignment: ${r.drains_mid_assignment}`,
    `  setup latency (dispatch → entry): steady p50 ${lat.steady.p50} ms p99 ${lat.steady.p99} ms (n ${lat.steady.n}); during a switch p50 ${lat.switch.p50} ms p99 ${lat.switch.p99} ms (n ${lat.switch.n}); p99 ratio switch/steady ${lat.ratio_p99_switch_over_steady} (goal ≤ 1.10)`,
    ...r.calls_lost.map((l) => `  lost: ${l.job} ${l.fate}${l.reason === undefined ? "" : ` (${l.reason})`} at ${(l.at_ms / 1000).toFixed(1)} s`),
    `  audit ${r.audit_verified ? "verified" : "NOT verified"}; run files in ${r.run_dir}`,
    ...(r.demo_error === undefined ? [] : [`  error: ${r.demo_error}`]),
  ].join("\n");
}

export function parseChaosFlags(argv: readonly string[]): { calls: number; seed: number; json: boolean; help: boolean } {
  const { values } = parseArgs({
    args: [...argv].filter((a) => a !== "--"),
    strict: true,
    options: { calls: { type: "string" }, seed: { type: "string" }, json: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } },
  });
  const int = (name: string, raw: string | undefined, fallback: number, min: number, max: number) => {
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!/^-?\d+$/.test(raw) || !Number.isSafeInteger(v) || v < min || v > max) throw new Error(`--${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(raw)}`);
    return v;
  };
  return { calls: int("calls", values.calls, 1000, 10, 5000), seed: int("seed", values.seed, 1, -(2 ** 31), 2 ** 32 - 1), json: values.json === true, help: values.help === true };
}

if (isMainModule(import.meta.url)) {
  let flags;
  try {
    flags = parseChaosFlags(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`openrtc chaos: ${(error as Error).message}\n\n${CHAOS_USAGE}\n`);
    process.exit(2);
  }
  if (flags.help) {
    process.stdout.write(`${CHAOS_USAGE}\n`);
    process.exit(0);
  }
  const report = await runChaos({ calls: flags.calls, seed: flags.seed }, { stdout: flags.json ? process.stderr : process.stdout, stderr: process.stderr, env: process.env });
  process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : `${formatChaos(report)}\n`);
  process.exit(report.ok ? 0 : 1);
}
