// `pnpm bench` (apps/demo): drain and overhead figures of real worker processes, side by side
// with their goals. Timing lives here, never in the pass/fail tests.
//
//   SIGTERM → "full" received         the dispatcher receives the worker's UpdateWorkerStatus{WS_FULL}
//   SIGTERM → first rejected job      a job offered in the same tick as the signal, answered unavailable
//   SIGTERM → /readyz 503             a tight /readyz poll from outside
//   last hang-up → process exit       the dispatcher sees the room deleted → the parent sees 'exit'
//   assignment → entry                OpenRTC worker (apps/demo/src/worker.ts) vs a bare AgentServer
//   worker RSS                        the same two, idle after their jobs
//
// Both worker kinds run under the same node flags (tsx loader), so the comparison isolates what
// OpenRTC adds. Knobs: BENCH_DRAIN_REPS (default 36), BENCH_ENTRY_REPS (default 20 per kind),
// BENCH_PROBE=0 (no job offered in the signal's tick: SIGTERM alone), BENCH_SETTLE_MS (default
// 3000: the pause before each signal). Right after a batch's calls start, every worker forks a
// replacement warm job process (seconds of CPU each); signalled then, a worker's handler waits for
// a core, and the figure measures that contention (2026-12-01: SIGTERM → WS_FULL p50 124 ms with
// no pause and no probe, 7 ms after 4 s). With the probe, the offer usually beats the signal and
// the SDK launching that job holds the worker's event loop before the signal handler runs.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { holdCallAgentPath, startDispatcher, workerLauncherPath, type Dispatcher } from "@openrtc/livekit-dispatcher";
import { Fleet, workerExecArgv, type WorkerProcess } from "../src/fleet.ts";

const DRAIN_REPS = Number(process.env.BENCH_DRAIN_REPS ?? 36);
const ENTRY_REPS = Number(process.env.BENCH_ENTRY_REPS ?? 20);
const BATCH = 6;
const PROBE = process.env.BENCH_PROBE !== "0";
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 3000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stderr.write(`${s}\n`);

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function rssOnce(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** Median of 9 VmRSS readings 100 ms apart (a single reading catches GC and page reclaim). */
async function rssMiB(pid: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 9; i++) {
    xs.push(rssOnce(pid));
    await sleep(100);
  }
  return percentile(xs, 50);
}

async function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(2);
  }
}

interface DrainSample {
  toFullMs: number | undefined;
  toRejectMs: number | undefined;
  toReadyz503Ms: number;
  hangupToExitMs: number;
  probeAccepted: boolean;
  /** Wall clock of the SIGTERM, to tell a call that hung up before it (then hang-up → exit is not a drain's). */
  signalledAtWall?: number;
  hungUpBeforeSignal?: boolean;
  /** Wall-clock split of hang-up → exit: [hang-up → drain_completed, → worker.exited, → process exit]. */
  split?: [number, number, number];
}

/** Polls /readyz as fast as one keep-alive connection allows until it answers 503. */
function first503(url: string, stop: { done: boolean }): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return new Promise((resolve, reject) => {
    const once = () => {
      if (stop.done) return reject(new Error("stopped"));
      const req = request(`${url}/readyz`, { agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 503) {
            agent.destroy();
            resolve(performance.now());
          } else once();
        });
      });
      req.on("error", reject);
      req.end();
    };
    once();
  });
}

async function drainBench(): Promise<DrainSample[]> {
  const apiKey = "bench";
  const apiSecret = randomBytes(32).toString("hex");
  const markers = mkdtempSync(join(tmpdir(), "bench-drain-"));
  // LiveKit's server rules; each worker has its own agent name, so each call and probe reaches one worker.
  const dispatcher = await startDispatcher({ apiKey, apiSecret, profile: "livekit", mintJobTokens: false });
  const hangupsWall = new Map<string, number>();
  dispatcher.events.on("job_ended", (job) => {
    if (job.workerId !== undefined && job.fate === "completed") {
      hangupsWall.set(job.workerId, Date.now());
    }
  });
  // When the dispatcher learns a worker takes no more jobs: its WS_FULL status update, or an
  // "unavailable" answer to an offer, whichever comes first.
  const refusals = new Map<string, number>();
  const refused = (workerId: string) => {
    if (!refusals.has(workerId)) refusals.set(workerId, performance.now());
  };
  dispatcher.events.on("job_rejected_by_worker", (_job, workerId, answer) => {
    if (answer === "unavailable") refused(workerId);
  });
  const fulls = new Map<string, number>();
  dispatcher.events.on("worker_status", (w) => {
    if (w.status !== "full") return;
    refused(w.id);
    if (!fulls.has(w.id)) fulls.set(w.id, performance.now());
  });
  // Wall-clock (ms) breakdown of hang-up → exit from the worker's own audit records.
  const auditAt = new Map<string, Map<string, number>>();
  const samples: DrainSample[] = [];
  let n = 0;
  while (samples.length < DRAIN_REPS) {
    const size = Math.min(BATCH, DRAIN_REPS - samples.length);
    const fleet = new Fleet({
      livekitUrl: dispatcher.url,
      apiKey,
      apiSecret,
      stdio: "ignore",
      // One warm job process per worker (production's minimum): six workers at once, each
      // starting two, would starve the very processes whose signal handling is measured.
      env: { HOLD_CALL_MARKER_DIR: markers, OPENRTC_IDLE_PROCESSES: "1" },
      onAudit: (records, worker) => {
        const m = auditAt.get(worker.name) ?? new Map<string, number>();
        for (const r of records) if (!m.has(r.event)) m.set(r.event, r.timestamp * 1000);
        auditAt.set(worker.name, m);
      },
    });
    const workers: { w: WorkerProcess; agent: string }[] = [];
    for (let i = 0; i < size; i++) {
      const agent = `drain-${n++}`;
      workers.push({ w: fleet.spawn({ name: agent, version: "v1.0.0", env: { LIVEKIT_AGENT_NAME: agent } }), agent });
    }
    await Promise.all(workers.map(({ w }) => w.ready));
    // One live call per worker, so each drain has something to wait for: long enough to outlast
    // every worker's settle pause and signal, so each call hangs up after its worker's SIGTERM
    // (shorter, the later workers' calls ended before their signal and "hang-up → exit" measured
    // the pause, not the exit).
    const callMs = 1500 + size * (SETTLE_MS + 1000);
    const calls = workers.map(({ agent }) => dispatcher.dispatch({ agentName: agent, metadata: JSON.stringify({ duration_ms: callMs }) }));
    const placed = await Promise.all(calls.map((c) => c.placed));
    await until("every call's entry", () => placed.every((p) => existsSync(join(markers, `${p.id}.started`))));
    await sleep(300);
    for (const { w, agent } of workers) {
      await sleep(SETTLE_MS);
      const stop = { done: false };
      const readyz = first503(w.controlUrl!, stop);
      await sleep(20); // the poller is running
      const t0 = performance.now();
      const signalledAtWall = Date.now();
      w.signal("SIGTERM");
      const probeRecord = PROBE ? await dispatcher.dispatch({ agentName: agent, metadata: JSON.stringify({ duration_ms: 100 }) }).placed : undefined;
      const t503 = await readyz;
      if (PROBE) await until("the dispatcher to see the worker refuse jobs", () => refusals.has(w.info!.workerId), 10_000).catch(() => undefined);
      const refusedAt = refusals.get(w.info!.workerId);
      await until("the worker's WS_FULL", () => fulls.has(w.info!.workerId), 10_000).catch(() => undefined);
      const fullAt = fulls.get(w.info!.workerId);
      samples.push({
        toFullMs: fullAt === undefined ? undefined : fullAt - t0,
        toRejectMs: refusedAt === undefined ? undefined : refusedAt - t0,
        toReadyz503Ms: t503 - t0,
        hangupToExitMs: Number.NaN,
        probeAccepted: probeRecord?.workerId !== undefined,
        signalledAtWall,
      });
      stop.done = true;
      (w as WorkerProcess & { sample?: DrainSample }).sample = samples[samples.length - 1];
    }
    // Exit is observed on the process itself (the fleet stamps its 'exit' as it happens; awaiting
    // it here, after every signal, would stamp the end of the loop), the hang-up at the
    // dispatcher (room deleted). Both wall clock, same process.
    await Promise.all(
      workers.map(async ({ w }) => {
        await w.exited;
        const exitWall = w.exitedAt!;
        const s = (w as WorkerProcess & { sample?: DrainSample }).sample!;
        const hangupWall = hangupsWall.get(w.info!.workerId);
        s.hangupToExitMs = hangupWall === undefined ? Number.NaN : exitWall - hangupWall;
        if (hangupWall !== undefined && hangupWall < (s.signalledAtWall ?? 0)) s.hungUpBeforeSignal = true;
        const a = auditAt.get(w.name);
        const drained = a?.get("deployment.drain_completed");
        const exited = a?.get("worker.exited");
        if (hangupWall !== undefined && drained !== undefined && exited !== undefined) {
          s.split = [drained - hangupWall, exited - drained, exitWall - exited];
        }
        if (w.exit?.code !== 0) throw new Error(`bench: ${w.name} exited ${w.exit?.code}`);
      }),
    );
    await fleet.close();
    log(`  drain: ${samples.length}/${DRAIN_REPS}`);
  }
  await dispatcher.close();
  return samples;
}

interface EntryResult {
  entryMs: number[];
  rssIdleMiB: number;
  rssAfterMiB: number;
}

/** Assignment → entry for an OpenRTC worker and a bare AgentServer, jobs interleaved. */
async function entryBench(): Promise<{ openrtc: EntryResult; bare: EntryResult }> {
  const apiKey = "bench";
  const apiSecret = randomBytes(32).toString("hex");
  const markers = mkdtempSync(join(tmpdir(), "bench-entry-"));
  const dispatcher: Dispatcher = await startDispatcher({ apiKey, apiSecret, profile: "livekit", mintJobTokens: false });
  const fleet = new Fleet({ livekitUrl: dispatcher.url, apiKey, apiSecret, stdio: "ignore", env: { HOLD_CALL_MARKER_DIR: markers } });
  const openrtc = fleet.spawn({ name: "openrtc", version: "v1.0.0", env: { LIVEKIT_AGENT_NAME: "openrtc" } });
  // The bare launcher shipped with the dispatcher: a plain AgentServer running the hold-call agent.
  const bare = spawn(process.execPath, [...workerExecArgv(), workerLauncherPath], {
    env: { ...process.env, LIVEKIT_URL: dispatcher.url, LIVEKIT_API_KEY: apiKey, LIVEKIT_API_SECRET: apiSecret, AGENT_FILE: holdCallAgentPath, LIVEKIT_AGENT_NAME: "bare", HOLD_CALL_MARKER_DIR: markers },
    stdio: ["ignore", "ignore", "ignore", "ipc"],
    detached: true,
  });
  const bareExited = new Promise((r) => bare.once("exit", r));
  const reap = () => {
    try {
      process.kill(-bare.pid!, "SIGKILL");
    } catch {
      // gone
    }
  };
  process.once("exit", reap);
  await Promise.all([openrtc.ready, new Promise((r) => bare.on("message", (m: { type?: string }) => m?.type === "registered" && r(undefined)))]);
  await sleep(3000);
  const rssIdle = { openrtc: await rssMiB(openrtc.pid), bare: await rssMiB(bare.pid!) };
  const entry: { openrtc: number[]; bare: number[] } = { openrtc: [], bare: [] };
  for (let i = 0; i < ENTRY_REPS * 2; i++) {
    const kind = i % 2 === 0 ? "openrtc" : "bare";
    const job = dispatcher.dispatch({ agentName: kind, metadata: JSON.stringify({ duration_ms: 50 }) });
    const placed = await job.placed;
    const ended = await job.ended;
    if (ended.fate !== "completed") throw new Error(`bench: ${kind} job ${ended.id} ended ${ended.fate}`);
    const started = statSync(join(markers, `${placed.id}.started`)).mtimeMs;
    // Warm-up: the first job of each kind pays one-time costs (tsx transform cache, module loads).
    if (i >= 2) entry[kind].push(started - placed.assignedAt! * 1000);
    if (i % 10 === 9) log(`  entry: ${i + 1}/${ENTRY_REPS * 2}`);
  }
  // Let the last job's garbage go (RSS right after a job swings by tens of MiB either way).
  await sleep(3000);
  const rssAfter = { openrtc: await rssMiB(openrtc.pid), bare: await rssMiB(bare.pid!) };
  openrtc.signal("SIGTERM");
  bare.kill("SIGTERM");
  await Promise.all([openrtc.exited, bareExited]);
  process.off("exit", reap);
  await fleet.close();
  await dispatcher.close();
  return {
    openrtc: { entryMs: entry.openrtc, rssIdleMiB: rssIdle.openrtc, rssAfterMiB: rssAfter.openrtc },
    bare: { entryMs: entry.bare, rssIdleMiB: rssIdle.bare, rssAfterMiB: rssAfter.bare },
  };
}

const fmt = (v: number, unit: string) => (Number.isFinite(v) ? `${v.toFixed(unit === "MiB" ? 1 : 2)} ${unit}` : "n/a");

async function run(): Promise<void> {
  log(`bench: ${DRAIN_REPS} drains (fresh worker each), ${ENTRY_REPS} jobs per worker kind; nproc-bound, takes a few minutes`);
  const drains = await drainBench();
  const entry = await entryBench();
  const rejects = drains.flatMap((s) => (s.toRejectMs === undefined ? [] : [s.toRejectMs]));
  const fulls = drains.flatMap((s) => (s.toFullMs === undefined ? [] : [s.toFullMs]));
  const readyz = drains.map((s) => s.toReadyz503Ms);
  const exits = drains.map((s) => s.hangupToExitMs).filter(Number.isFinite);
  const entryOpen = entry.openrtc.entryMs;
  const entryBare = entry.bare.entryMs;
  type Row = [string, string, string, string, string];
  const rows: Row[] = [["measure", "n", "value", "goal", "ratio (value/goal)"]];
  const add = (name: string, n: number, value: number, unit: string, goal: number, goalText: string) =>
    rows.push([name, String(n), fmt(value, unit), goalText, Number.isFinite(value) ? (value / goal).toFixed(2) : "n/a"]);
  add("SIGTERM → WS_FULL received, p99", fulls.length, percentile(fulls, 99), "ms", 10, "≤ 10 ms");
  add("SIGTERM → WS_FULL received, p50", fulls.length, percentile(fulls, 50), "ms", 10, "≤ 10 ms");
  add("SIGTERM → worker refuses jobs, p99", rejects.length, percentile(rejects, 99), "ms", 10, "≤ 10 ms");
  add("SIGTERM → worker refuses jobs, p50", rejects.length, percentile(rejects, 50), "ms", 10, "≤ 10 ms");
  add("SIGTERM → /readyz 503, p99", readyz.length, percentile(readyz, 99), "ms", 10, "≤ 10 ms");
  add("SIGTERM → /readyz 503, p50", readyz.length, percentile(readyz, 50), "ms", 10, "≤ 10 ms");
  add("last hang-up → process exit, p99", exits.length, percentile(exits, 99), "ms", 100, "≤ 100 ms");
  add("last hang-up → process exit, p50", exits.length, percentile(exits, 50), "ms", 100, "≤ 100 ms");
  const p50Ratio = percentile(entryOpen, 50) / percentile(entryBare, 50);
  const p99Ratio = percentile(entryOpen, 99) / percentile(entryBare, 99);
  rows.push(["assignment → entry p50, OpenRTC / bare", String(entryOpen.length), `${fmt(percentile(entryOpen, 50), "ms")} / ${fmt(percentile(entryBare, 50), "ms")}`, "ratio ≤ 1.02", (p50Ratio / 1.02).toFixed(2)]);
  rows.push(["assignment → entry p99, OpenRTC / bare", String(entryOpen.length), `${fmt(percentile(entryOpen, 99), "ms")} / ${fmt(percentile(entryBare, 99), "ms")}`, "ratio ≤ 1.02", (p99Ratio / 1.02).toFixed(2)]);
  const rssIdle = entry.openrtc.rssIdleMiB - entry.bare.rssIdleMiB;
  const rssAfter = entry.openrtc.rssAfterMiB - entry.bare.rssAfterMiB;
  rows.push(["worker RSS idle, OpenRTC − bare", "1", `${fmt(entry.openrtc.rssIdleMiB, "MiB")} − ${fmt(entry.bare.rssIdleMiB, "MiB")} = ${fmt(rssIdle, "MiB")}`, "≤ +10 MB", (rssIdle / (10e6 / 2 ** 20)).toFixed(2)]);
  rows.push([`worker RSS after ${ENTRY_REPS} jobs, OpenRTC − bare`, "1", `${fmt(entry.openrtc.rssAfterMiB, "MiB")} − ${fmt(entry.bare.rssAfterMiB, "MiB")} = ${fmt(rssAfter, "MiB")}`, "≤ +10 MB", (rssAfter / (10e6 / 2 ** 20)).toFixed(2)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const out = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
  out.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  process.stdout.write(`\n@openrtc/demo bench (real worker processes; ratio ≤ 1.00 meets the goal)\n${out.join("\n")}\n`);
  const accepted = drains.filter((s) => s.probeAccepted).length;
  const early = drains.filter((s) => s.hungUpBeforeSignal).length;
  if (early > 0) process.stdout.write(`\nnote: ${early} of ${drains.length} calls hung up before their worker's SIGTERM; their hang-up → exit includes the wait for the signal\n`);
  const splits = drains.flatMap((s) => (s.split === undefined ? [] : [s.split]));
  const part = (i: number) => percentile(splits.map((x) => x[i]!), 50).toFixed(0);
  process.stdout.write(
    `\nhang-up → exit, p50 of each step (wall clock, ${splits.length} drains): hang-up → pool drained ${part(0)} ms, → worker.exited written (pool closed, audit flushed) ${part(1)} ms, → process exit seen (AgentServer.close, teardown) ${part(2)} ms\n`,
  );
  process.stdout.write(
    `entry ratio p50 ${p50Ratio.toFixed(3)}, p99 ${p99Ratio.toFixed(3)}. "Refuses jobs" = the dispatcher receives the worker's WS_FULL or an "unavailable" answer; ${PROBE ? `a probe job offered in the signal's tick was accepted ${accepted}/${drains.length} times (the offer beat the signal; that call then drained normally)` : "no probe job (BENCH_PROBE=0): SIGTERM alone"}. p99 of ${readyz.length} samples is close to their max.\n`,
  );
}

await run();
process.exit(0);
