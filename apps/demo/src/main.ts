// `pnpm demo`: a whole blue-green deploy and rollback of real @livekit/agents worker processes
// with OpenRTC attached, under a stream of simulated calls, with zero dropped calls.
import { randomBytes } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { AuditLog, isMainModule, type AuditRecord } from "@openrtc/core";
import type { JobRecord } from "@openrtc/livekit-dispatcher";
import { createCollectorServer, OPENRTC_COLLECTOR_URL_ENV } from "@openrtc/observer-voicegateway";
import { EmbeddedBackend, LiveKitBackend, liveKitFromEnv, type CallBackend, type CallTally } from "./backend.ts";
import { buildSchedule, type PlannedCall } from "./calls.ts";
import { Coordinator, type CoordinatorOptions, type DeploymentOutcome, type PhaseMark } from "./coordinator.ts";
import { Fleet, type WorkerProcess } from "./fleet.ts";
import { ManifestFile } from "./manifest-file.ts";
import { encodeRegression, judge, REGRESSION_ENV, regressionFor, storedCalls, toDemoComparison, type DemoComparison } from "./regression.ts";
import { RunAudit } from "./run-audit.ts";
import { LiveTable, rowOf } from "./table.ts";

export const USAGE = `usage: pnpm demo [-- --calls N] [--seed S] [--json] [--audit-file PATH]

  --calls N          simulated calls over the whole run (default 40, 0–1000)
  --seed S           integer seed for the call schedule: same seed, same calls (default 1)
  --json             print only the final summary, as one JSON object, on stdout
  --audit-file PATH  where the run's audit log goes (default: a new temp directory)
  -h, --help         this text

With LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET set, workers register with that
LiveKit server and calls are created through its API instead of the embedded dispatcher.`;

export interface DemoFlags {
  calls: number;
  seed: number;
  json: boolean;
  auditFile: string | undefined;
  help: boolean;
}

export class UsageError extends Error {
  override name = "UsageError";
}

export const OLD_VERSION = "v1.0.0";
export const NEW_VERSION = "v2.0.0";

function integerFlag(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new UsageError(`--${name} must be an integer, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${raw}`);
  return value;
}

/** Parses the command line; throws `UsageError` naming the bad flag. */
export function parseFlags(argv: readonly string[]): DemoFlags {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv].filter((a) => a !== "--"),
      strict: true,
      allowPositionals: false,
      options: {
        calls: { type: "string" },
        seed: { type: "string" },
        json: { type: "boolean", default: false },
        "audit-file": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const auditFile = values["audit-file"] as string | undefined;
  if (auditFile !== undefined && auditFile.trim() === "") throw new UsageError("--audit-file needs a file path");
  return {
    calls: integerFlag("calls", values.calls as string | undefined, 40, 0, 1000),
    seed: integerFlag("seed", values.seed as string | undefined, 1, -(2 ** 31), 2 ** 32 - 1),
    json: values.json === true,
    auditFile,
    help: values.help === true,
  };
}

export interface DemoSummary {
  ok: boolean;
  backend: "embedded" | "livekit";
  /** Call fates judged by their callers from outside the workers (embedded dispatcher, or LiveKit's server API). */
  fates_observed_from_outside: boolean;
  seed: number;
  calls: number;
  /** Calls dispatched. */
  calls_started: number;
  /** The agent's job was still running when its caller hung up. */
  calls_completed: number;
  /** The job ended before its caller hung up, whatever the worker reported; by cause. */
  calls_cut_short: number;
  calls_cut_short_by_cause: Record<string, number>;
  /** Calls a caller lost: cut short, or never answered (unplaced or abandoned by LiveKit). */
  calls_dropped: number;
  jobs_rejected: number;
  jobs_rejected_by_reason: Record<string, number>;
  /** No worker was offered the call. */
  jobs_unplaced: number;
  /** Offers were made and LiveKit's job request gave up (each abandonment counted; the demo never re-dispatches). */
  jobs_abandoned: number;
  jobs_not_run_by_reason: Record<string, number>;
  calls_by_version: Record<string, number>;
  /** Call records the coordinator's collector received from the job processes' observers. */
  calls_observed: number;
  /** What the new version's agent carries (src/regression.ts). */
  regression: { version: string; tts_slowdown: number; failure_rate: number; seed: number };
  /** `compare` of both versions' calls, run before the rollback (null if it could not run). */
  comparison: DemoComparison | null;
  deployments: DeploymentOutcome[];
  phases: { phase: string; at_seconds: number }[];
  workers: { name: string; worker_id: string | null; version: string; pid: number; exit_code: number | null; calls_taken: number | null; dropped_sessions: number | null }[];
  audit_file: string;
  audit_verified: boolean;
  audit_records: number;
  audit_origins: number;
  audit_error?: string;
  duration_seconds: number;
  error?: string;
}

export interface DemoIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  /** Install a SIGINT handler that stops the run cleanly (CLI only). */
  handleSigint?: boolean;
}

/** Runs the demo; resolves with the process exit code (0 ok, 1 a call dropped or the run failed, 2 bad usage). */
export async function main(argv: readonly string[], io: DemoIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  let flags: DemoFlags;
  try {
    flags = parseFlags(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(`openrtc demo: ${error.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (flags.help) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let liveKit: ReturnType<typeof liveKitFromEnv>;
  try {
    liveKit = liveKitFromEnv(io.env);
  } catch (error) {
    io.stderr.write(`openrtc demo: ${(error as Error).message}\n`);
    return 2;
  }
  const { summary } = await runDemo(flags, liveKit, io);
  if (flags.json) io.stdout.write(`${JSON.stringify(summary)}\n`);
  else io.stdout.write(`${formatSummary(summary)}\n`);
  return summary.ok ? 0 : 1;
}

/** What a run leaves besides its summary: the outside view of every call and the audit trail. */
export interface DemoRun {
  summary: DemoSummary;
  /** The dispatcher's record of every call (embedded backend; empty on LiveKit). */
  jobs: JobRecord[];
  records: readonly AuditRecord[];
  workers: readonly WorkerProcess[];
  phases: readonly PhaseMark[];
  runDir: string;
  markerDir: string;
}

/** Extension points for runs built on the demo (the chaos run). */
export interface DemoHooks {
  /** The call schedule (default: `buildSchedule({ calls, seed })`). */
  schedule?: PlannedCall[];
  /** Extra environment for every worker. */
  workerEnv?: Record<string, string>;
  beforeSignal?: CoordinatorOptions["beforeSignal"];
  signalBeforeSwitch?: boolean;
  /** Called once the run is under way; `stop` is awaited when it ends. */
  onRunning?: (run: { backend: CallBackend; fleet: Fleet; coordinator: Coordinator; markerDir: string; note: (line: string) => void }) => { stop(): Promise<void> | void };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Bounds on the wait before the comparison: calls in flight hang up, then their records arrive. */
const JUDGE_SETTLE_MS = 15_000;
const JUDGE_RECORDS_MS = 5_000;

export async function runDemo(flags: DemoFlags, liveKit: ReturnType<typeof liveKitFromEnv>, io: DemoIo, hooks: DemoHooks = {}): Promise<DemoRun> {
  const t0 = Date.now();
  const out = flags.json ? io.stderr : io.stdout;
  const runDir = flags.auditFile === undefined ? await mkdtemp(join(tmpdir(), "openrtc-demo-")) : dirname(resolve(flags.auditFile));
  mkdirSync(runDir, { recursive: true });
  const auditPath = flags.auditFile === undefined ? join(runDir, "audit.jsonl") : resolve(flags.auditFile);
  const runAudit = new RunAudit(auditPath);
  await runAudit.open();
  const audit = new AuditLog({ sinks: [runAudit.sink()], origin: `demo-coordinator-${process.pid}-${randomBytes(4).toString("hex")}`, version: null });
  const secret = randomBytes(32).toString("hex");
  const manifest = new ManifestFile(join(runDir, `manifest-${randomBytes(4).toString("hex")}.json`), secret);

  const markerDir = join(runDir, "markers");
  mkdirSync(markerDir, { recursive: true });
  // The observers in the job processes ship every call's record here; compare reads it.
  const collector = await createCollectorServer();
  const regression = regressionFor(flags.seed, NEW_VERSION);
  const backend: CallBackend = liveKit === undefined ? await EmbeddedBackend.start({ markerDir, seed: flags.seed }) : new LiveKitBackend(liveKit.url, liveKit.apiKey, liveKit.apiSecret);
  const outputTail = new Map<string, string[]>();
  const logs = new Map<string, WriteStream>();
  const fleet = new Fleet({
    livekitUrl: backend.url,
    apiKey: backend.apiKey,
    apiSecret: backend.apiSecret,
    manifestFile: manifest.path,
    membershipSecrets: [secret],
    env: {
      ...backend.workerEnv,
      [OPENRTC_COLLECTOR_URL_ENV]: collector.url,
      [REGRESSION_ENV]: encodeRegression(regression),
      ...hooks.workerEnv,
      ...(backend.agentName === "" ? {} : { LIVEKIT_AGENT_NAME: backend.agentName }),
    },
    stdio: "pipe",
    // Worker logs go to <run dir>/<worker>.log (last lines kept for error reports), not to the
    // terminal: the table is the view.
    onOutput: (w, _stream, chunk) => {
      let log = logs.get(w.name);
      if (log === undefined) logs.set(w.name, (log = createWriteStream(join(runDir, `${w.name}.log`))));
      log.write(chunk);
      const lines = outputTail.get(w.name) ?? [];
      lines.push(...chunk.toString("utf8").split("\n").filter((l) => l !== ""));
      outputTail.set(w.name, lines.slice(-20));
    },
    onAudit: (records) => runAudit.append(records),
  });
  const schedule = hooks.schedule ?? buildSchedule({ calls: flags.calls, seed: flags.seed });
  let coordinator: Coordinator | undefined;
  const table = new LiveTable({
    out,
    source: () => ({
      header: {
        phase: coordinator?.phase ?? "init",
        callsDispatched: coordinator?.dispatched ?? 0,
        callsTotal: schedule.length,
        manifest: manifest.current?.active_versions ?? [],
      },
      rows: fleet.workers.map(rowOf),
    }),
  });
  let comparison: DemoComparison | null = null;
  const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
  /** compare over the calls both versions finished, before the rollback (see regression.ts). */
  const judgeRollback = async (base: string, candidate: string): Promise<{ reason: string; fields: Record<string, unknown> }> => {
    // Judge finished calls: let the calls in flight hang up and their records arrive (bounded:
    // a call that never ends must not hold the rollback).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([backend.settled(), new Promise((r) => (timer = setTimeout(r, JUDGE_SETTLE_MS)))]).finally(() => clearTimeout(timer));
    const expected = backend.tally().completed;
    const deadline = Date.now() + JUDGE_RECORDS_MS;
    while (storedCalls(collector.store, [base, candidate]) < expected && Date.now() < deadline) await sleep(100);
    try {
      const { result, text } = judge(collector.store, base, candidate);
      comparison = toDemoComparison(result);
      table.note(`${stamp()} before the rollback: ${text.replace(/\n/g, "\n        ")}`);
      const reason = result.verdict === "roll_back" ? result.reason : `${result.verdict}: ${result.reason}; rolled back regardless (the demo's scenario)`;
      return { reason, fields: { verdict: result.verdict } };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      table.note(`${stamp()} compare failed: ${message}`);
      return { reason: `demo: simulated regression in the new version (compare failed: ${message})`, fields: { verdict: null } };
    }
  };
  coordinator = new Coordinator({
    judgeRollback,
    fleet,
    backend,
    manifest,
    audit,
    schedule,
    oldVersion: OLD_VERSION,
    newVersion: NEW_VERSION,
    ...(hooks.beforeSignal === undefined ? {} : { beforeSignal: hooks.beforeSignal }),
    ...(hooks.signalBeforeSwitch === undefined ? {} : { signalBeforeSwitch: hooks.signalBeforeSwitch }),
    log: (line) => table.note(`${stamp()} ${line}`),
  });
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) {
      // Workers run in their own process groups: take them down before leaving.
      for (const w of fleet.live()) w.killGroup();
      process.exit(130);
    }
    table.note("interrupted: no further calls; stopping (workers are killed, calls in flight are dropped; Ctrl-C again to quit now)");
    coordinator?.stop();
  };
  if (io.handleSigint) process.on("SIGINT", onSigint);

  table.note(`openrtc demo: ${schedule.length} calls, seed ${flags.seed}, ${backend.kind === "embedded" ? `embedded dispatcher ${backend.url}` : `LiveKit ${backend.url}`}; audit log ${auditPath}`);
  fleet.startPolling();
  table.start();
  const note = (line: string) => table.note(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}`);
  const extra = hooks.onRunning?.({ backend, fleet, coordinator, markerDir, note });
  let error: string | undefined;
  try {
    await coordinator.run();
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
    table.note(`demo failed: ${error}`);
    for (const [name, lines] of outputTail) if (lines.length > 0) table.note(`--- last output of ${name} ---\n${lines.join("\n")}`);
  } finally {
    await extra?.stop();
    process.off("SIGINT", onSigint);
    table.stop();
    await fleet.close();
    // Workers killed here (a failed or interrupted run) took their live calls with them.
    for (const w of fleet.workers) if (w.info !== undefined && w.exit?.code !== 0) backend.workerKilled?.(w.info.workerId);
  }
  if (error === undefined) await backend.settled();
  const tally = backend.tally();
  const jobs = backend instanceof EmbeddedBackend ? backend.dispatcher.jobs() : [];
  await audit.close({ timeoutMs: 5000 });
  await runAudit.close();
  await backend.close();
  const callsObserved = storedCalls(collector.store, [...new Set(collector.store.buckets().map((b) => b.key.version))]);
  await collector.close();
  for (const log of logs.values()) log.end();
  if (backend instanceof EmbeddedBackend) {
    // The dispatcher's record of every call (offers, assignment, fate): the outside view.
    await writeFile(join(runDir, "calls.json"), `${JSON.stringify(jobs, null, 1)}\n`);
  }
  const verified = await runAudit.verify();
  const rejected: Record<string, number> = {};
  for (const r of runAudit.records) {
    if (r.event === "worker.rejected") rejected[String(r.reason)] = (rejected[String(r.reason)] ?? 0) + 1;
  }
  const summary: DemoSummary = {
    ok: false,
    backend: backend.kind,
    fates_observed_from_outside: tally.observed,
    seed: flags.seed,
    calls: flags.calls,
    calls_started: tally.started,
    calls_completed: tally.completed,
    calls_cut_short: tally.cutShort,
    calls_cut_short_by_cause: tally.cutShortByCause,
    calls_dropped: tally.cutShort + tally.unplaced + tally.abandoned,
    jobs_rejected: Object.values(rejected).reduce((a, b) => a + b, 0),
    jobs_rejected_by_reason: rejected,
    jobs_unplaced: tally.unplaced,
    jobs_abandoned: tally.abandoned,
    jobs_not_run_by_reason: tally.notRunByReason,
    calls_by_version: tally.byVersion,
    calls_observed: callsObserved,
    regression: { version: regression.version, tts_slowdown: regression.ttsSlowdown, failure_rate: regression.failureRate, seed: regression.seed },
    comparison,
    deployments: coordinator.deployments,
    phases: coordinator.phases.map((p) => ({ phase: p.phase, at_seconds: Math.round((p.at - t0) / 100) / 10 })),
    workers: fleet.workers.map((w) => ({
      name: w.name,
      worker_id: w.info?.workerId ?? null,
      version: w.version,
      pid: w.pid,
      exit_code: w.exit?.code ?? null,
      calls_taken: w.snapshot?.total_sessions_started ?? null,
      dropped_sessions: w.droppedSessions ?? null,
    })),
    audit_file: auditPath,
    audit_verified: verified.ok,
    audit_records: verified.ok ? verified.records : runAudit.records.length,
    audit_origins: verified.ok ? verified.origins : 0,
    duration_seconds: Math.round((Date.now() - t0) / 100) / 10,
  };
  if (!verified.ok) summary.audit_error = verified.message;
  else if (runAudit.errors.length > 0) summary.audit_error = runAudit.errors[0];
  if (error !== undefined) summary.error = error;
  // Every call's caller heard the agent to the end: completed == started, in every mode.
  summary.ok =
    error === undefined &&
    summary.calls_started === schedule.length &&
    summary.calls_completed === summary.calls_started &&
    summary.audit_verified &&
    runAudit.errors.length === 0 &&
    coordinator.deployments.every((d) => d.completed);
  return { summary, jobs, records: runAudit.records, workers: fleet.workers, phases: coordinator.phases, runDir, markerDir };
}

export function formatSummary(s: DemoSummary): string {
  const versions = Object.entries(s.calls_by_version)
    .map(([v, n]) => `${v}: ${n}`)
    .join(", ");
  const lines = [
    "",
    `openrtc demo ${s.ok ? "OK" : "FAILED"} in ${s.duration_seconds} s (${s.backend}; call fates judged by the callers)`,
    `  calls: ${s.calls_started} started, ${s.calls_completed} completed, ${s.calls_cut_short} cut short${s.calls_cut_short > 0 ? ` (${Object.entries(s.calls_cut_short_by_cause).map(([c, n]) => `${c}: ${n}`).join(", ")})` : ""}, ${s.jobs_unplaced} unplaced, ${s.jobs_abandoned} abandoned`,
    `  calls by version: ${versions || "none"}`,
    `  jobs rejected by workers: ${s.jobs_rejected}${s.jobs_rejected > 0 ? ` (${Object.entries(s.jobs_rejected_by_reason).map(([r, n]) => `${r}: ${n}`).join(", ")})` : ""}`,
    `  regression in ${s.regression.version} (seed ${s.regression.seed}): TTS ${Math.round(s.regression.tts_slowdown * 100)}% slower, ${Math.round(s.regression.failure_rate * 100)}% of calls fail; ${s.calls_observed} call records observed`,
    s.comparison === null ? "  comparison: not run" : `  comparison ${s.comparison.base} (${s.comparison.calls.base} calls) → ${s.comparison.candidate} (${s.comparison.calls.candidate} calls): ${s.comparison.verdict} — ${s.comparison.reason}`,
    ...s.deployments.map((d) => `  ${d.kind} ${d.from_version} → ${d.version}: ${d.completed ? "completed" : "NOT completed"}`),
    `  audit log: ${s.audit_file} (${s.audit_records} records, ${s.audit_origins} origins) ${s.audit_verified ? "verified" : `NOT verified: ${s.audit_error}`}`,
    `  check it yourself: pnpm --filter @openrtc/core exec tsx --conditions=@openrtc/source src/cli.ts audit verify ${s.audit_file}`,
  ];
  if (s.error !== undefined) lines.push(`  error: ${s.error}`);
  return lines.join("\n");
}

if (isMainModule(import.meta.url)) {
  const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, handleSigint: true });
  process.exit(code);
}
