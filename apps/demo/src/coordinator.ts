// The deploy/rollback state machine, in one place. It drives workers only the way a platform
// does (start processes, publish the signed manifest, send SIGTERM) and decides only from what
// it observes (IPC readiness, /snapshot, exit codes). Every phase is written to the audit log.
//
//   start_v1 → traffic → start_v2 → drain_v1 → rollback_start_v1 → drain_v2 → done
//
// Manifest over the run: {v1} → {v1,v2} → {v2} → {v1,v2} → {v1}. A version leaves the manifest
// before its workers are signalled, so they stop being offered new jobs (WS_FULL) while their
// in-flight calls run to hang-up; the new version is in the manifest before it must take traffic.
import type { AuditLog, AuditRecord } from "@openrtc/core";
import type { CallBackend } from "./backend.ts";
import type { PlannedCall } from "./calls.ts";
import type { Fleet, WorkerProcess } from "./fleet.ts";
import type { ManifestFile } from "./manifest-file.ts";

export const PHASES = ["start_v1", "traffic", "start_v2", "drain_v1", "rollback_start_v1", "drain_v2", "done"] as const;
export type Phase = (typeof PHASES)[number];

export interface CoordinatorOptions {
  fleet: Fleet;
  backend: CallBackend;
  manifest: ManifestFile;
  audit: AuditLog;
  schedule: readonly PlannedCall[];
  oldVersion: string;
  newVersion: string;
  workersPerVersion?: number;
  rollbackReason?: string;
  /**
   * Judges the new version before the rollback (the demo: `compare` over both versions' calls);
   * its `reason` goes into `deployment.rolled_back`, with its extra `fields`. Default: the fixed
   * `rollbackReason`.
   */
  judgeRollback?: (base: string, candidate: string) => Promise<{ reason: string; fields?: Record<string, unknown> }>;
  /** A worker that has not registered within this long fails the run. Default 60 s. */
  readyTimeoutMs?: number;
  /** A drain that has not finished within this long fails the run (nothing is killed). Default 120 s. */
  drainWaitMs?: number;
  onPhase?: (phase: Phase) => void;
  /**
   * Resolves when the workers about to be drained should get their SIGTERM (e.g. the chaos run
   * waits for a job assignment to one of them, to signal mid-assignment). Default: at once.
   */
  beforeSignal?: (workers: readonly WorkerProcess[]) => Promise<void>;
  /** SIGTERM the retiring workers before the manifest switch (default after it). */
  signalBeforeSwitch?: boolean;
  /** Human-readable progress lines. */
  log?: (line: string) => void;
}

export interface PhaseMark {
  phase: Phase;
  /** ms since epoch */
  at: number;
}

export interface DeploymentOutcome {
  from_version: string;
  version: string;
  kind: "deploy" | "rollback";
  completed: boolean;
  /** ms since epoch the old version left the manifest (new calls go to the new version after it). */
  switched_at: number | undefined;
}

const ACTOR = "demo-coordinator";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Coordinator {
  readonly #o: Required<Omit<CoordinatorOptions, "onPhase" | "log" | "beforeSignal" | "signalBeforeSwitch" | "judgeRollback">> & Pick<CoordinatorOptions, "onPhase" | "log" | "beforeSignal" | "signalBeforeSwitch" | "judgeRollback">;
  phase: Phase | "init" = "init";
  readonly phases: PhaseMark[] = [];
  readonly deployments: DeploymentOutcome[] = [];
  /** Calls dispatched so far. */
  dispatched = 0;
  readonly #waves = new Map<number, PlannedCall[]>();
  #stopped = false;

  constructor(options: CoordinatorOptions) {
    this.#o = { workersPerVersion: 2, rollbackReason: "demo: simulated regression in the new version", readyTimeoutMs: 60_000, drainWaitMs: 120_000, ...options };
    for (const call of options.schedule) {
      const list = this.#waves.get(call.wave) ?? [];
      list.push(call);
      this.#waves.set(call.wave, list);
    }
  }

  /** Runs the whole deploy and rollback. Throws when a step cannot complete (nothing is force-killed). */
  async run(): Promise<void> {
    const { oldVersion: v1, newVersion: v2, manifest } = this.#o;

    this.#enter("start_v1");
    await manifest.publish([v1]);
    const blue = this.#startWorkers(v1, "a");
    await this.#awaitServing(blue);

    this.#enter("traffic");
    await this.#wave(0);

    this.#enter("start_v2");
    this.#emit("deployment.started", { version: v2, from_version: v1, target: "fleet", workers: this.#o.workersPerVersion });
    await manifest.publish([v1, v2]);
    const green = this.#startWorkers(v2, "a");
    // Calls pause while workers boot: a worker start costs seconds of CPU, and job processes
    // forked meanwhile on a 2-core box can miss the SDK's initialization deadline.
    await this.#awaitServing(green);
    await this.#wave(1);

    this.#enter("drain_v1");
    // Switch while the old version is busy (that is the point: its calls must finish where they
    // started). Under LiveKit's random placement the previous wave may have gone all to v2.
    const early = await this.#dispatchUntilBusy(blue, 2);
    const forward = await this.#retire(v2, v1, blue, green, "deploy", "retiring the old version", 2, early);
    await this.#complete(forward, green, blue);

    this.#enter("rollback_start_v1");
    // The verdict comes before the rollback is recorded (and before the old version returns).
    const judged: { reason: string; fields?: Record<string, unknown> } = this.#o.judgeRollback === undefined ? { reason: this.#o.rollbackReason } : await this.#o.judgeRollback(v1, v2);
    this.#emit("deployment.rolled_back", { ...judged.fields, version: v1, from_version: v2, target: "fleet", reason: judged.reason });
    await manifest.publish([v1, v2]);
    const blueAgain = this.#startWorkers(v1, "b");
    await this.#awaitServing(blueAgain);
    await this.#wave(3);

    this.#enter("drain_v2");
    const earlyBack = await this.#dispatchUntilBusy(green, 4);
    const rollback = await this.#retire(v1, v2, green, blueAgain, "rollback", "rolling back", 4, earlyBack);
    await this.#complete(rollback, blueAgain, green);

    this.#enter("done");
    // The fleet shuts down the same way: calls still in flight finish on their worker, then it
    // exits. (Waiting on the dispatcher first could wait forever: a job whose process never
    // started is never reported ended to LiveKit; it ends, as dropped, when its worker leaves.)
    await this.#o.backend.placed();
    await this.#drain(blueAgain, "demo finished");
    await this.#o.backend.settled();
  }

  /** Stops dispatching further calls (e.g. on Ctrl-C). */
  stop(): void {
    this.#stopped = true;
  }

  #enter(phase: Phase): void {
    this.phase = phase;
    this.phases.push({ phase, at: Date.now() });
    this.#emit("demo.phase", { target: "fleet", phase });
    this.#o.onPhase?.(phase);
    this.#o.log?.(`phase ${phase}`);
  }

  #emit(event: string, fields: Record<string, unknown>): AuditRecord {
    return this.#o.audit.emit(event, { actor: ACTOR, ...fields });
  }

  #startWorkers(version: string, generation: string): WorkerProcess[] {
    const out: WorkerProcess[] = [];
    for (let i = 0; i < this.#o.workersPerVersion; i++) {
      out.push(this.#o.fleet.spawn({ name: `${version}-${generation}${i + 1}`, version }));
    }
    this.#o.log?.(`started ${out.map((w) => `${w.name} (pid ${w.pid})`).join(", ")}`);
    return out;
  }

  /** Registered with LiveKit and reporting `serving` in its snapshot. */
  async #awaitServing(workers: readonly WorkerProcess[]): Promise<void> {
    await Promise.all(
      workers.map((w) =>
        this.#until(`${w.name} to register and serve`, this.#o.readyTimeoutMs, async () => {
          if (w.info === undefined) return false;
          const snap = await w.readSnapshot();
          return snap?.state === "serving";
        }, () => w.ready),
      ),
    );
  }

  /**
   * Publishes a manifest without `from`, then waits until the snapshots show it took effect:
   * the leaving workers report member:false (they answer LiveKit "full" and refuse offers),
   * the arriving workers member:true. From here on new calls land on `to`.
   */
  async #switchTo(to: string, from: string, leaving: readonly WorkerProcess[], arriving: readonly WorkerProcess[], kind: "deploy" | "rollback"): Promise<DeploymentOutcome> {
    const manifest = await this.#o.manifest.publish([to]);
    await this.#until(`workers to apply manifest seq ${manifest.seq} (${to} only)`, 30_000, async () => {
      const [l, a] = await Promise.all([Promise.all(leaving.map((w) => w.readSnapshot())), Promise.all(arriving.map((w) => w.readSnapshot()))]);
      // A leaving worker takes no new job once it is out of the manifest or draining.
      return l.every((s) => s === undefined || s.member === false || s.draining) && a.every((s) => s?.member === true);
    });
    const outcome: DeploymentOutcome = { from_version: from, version: to, kind, completed: false, switched_at: Date.now() };
    this.deployments.push(outcome);
    this.#emit("demo.manifest_switched", { target: "fleet", version: to, from_version: from, manifest_seq: manifest.seq, active_versions: [to] });
    return outcome;
  }

  /**
   * Moves traffic from `leaving` to `arriving` and retires `leaving`: the manifest switch, then
   * SIGTERM (or, with `signalBeforeSwitch`, SIGTERM first, the way a platform retiring pods
   * does without a manifest), while the rest of wave `wave` is dispatched.
   */
  async #retire(to: string, from: string, leaving: readonly WorkerProcess[], arriving: readonly WorkerProcess[], kind: "deploy" | "rollback", why: string, wave: number, early: number): Promise<DeploymentOutcome> {
    if (this.#o.signalBeforeSwitch) {
      // Traffic keeps coming while the platform retires the old workers.
      const traffic = this.#wave(wave, early);
      await this.#o.beforeSignal?.(leaving);
      this.#signal(leaving, why);
      const outcome = await this.#switchTo(to, from, leaving, arriving, kind);
      await Promise.all([this.#drain(leaving, why), traffic]);
      return outcome;
    }
    await this.#o.beforeSignal?.(leaving);
    const outcome = await this.#switchTo(to, from, leaving, arriving, kind);
    await Promise.all([this.#drain(leaving, why), this.#wave(wave, early)]);
    return outcome;
  }

  #signal(workers: readonly WorkerProcess[], why: string): void {
    const fresh = workers.filter((w) => w.terminatedAt === undefined);
    for (const w of fresh) w.signal("SIGTERM");
    if (fresh.length > 0) this.#o.log?.(`SIGTERM → ${fresh.map((w) => w.name).join(", ")} (${why})`);
  }

  /** SIGTERMs the workers (unless already signalled) and waits until each exited; a non-zero exit fails the run. */
  async #drain(workers: readonly WorkerProcess[], why: string): Promise<void> {
    this.#signal(workers, why);
    await this.#until(`${workers.map((w) => w.name).join(", ")} to drain and exit`, this.#o.drainWaitMs, async () => workers.every((w) => !w.alive), () =>
      Promise.all(workers.map((w) => w.exited)),
    );
    const bad = workers.filter((w) => w.exit?.code !== 0);
    if (bad.length > 0) {
      throw new Error(`worker(s) exited uncleanly: ${bad.map((w) => `${w.name} code ${w.exit?.code} signal ${w.exit?.signal}`).join(", ")}`);
    }
  }

  /**
   * `deployment.completed` once the snapshots show every live worker on the new version and
   * each old worker exited 0 having drained to 0 active sessions.
   */
  async #complete(outcome: DeploymentOutcome, current: readonly WorkerProcess[], old: readonly WorkerProcess[]): Promise<void> {
    await this.#o.fleet.pollOnce();
    const live = this.#o.fleet.live();
    const strays = live.filter((w) => w.snapshot?.deployment_version !== outcome.version);
    if (strays.length > 0) throw new Error(`deployment to ${outcome.version} not complete: ${strays.map((w) => `${w.name} reports ${w.snapshot?.deployment_version}`).join(", ")}`);
    const undrained = old.filter((w) => w.alive || w.exit?.code !== 0 || w.snapshot === undefined || w.droppedSessions !== 0);
    if (undrained.length > 0) throw new Error(`old workers did not drain cleanly: ${undrained.map((w) => w.name).join(", ")}`);
    outcome.completed = true;
    this.#emit("deployment.completed", {
      version: outcome.version,
      from_version: outcome.from_version,
      target: "fleet",
      kind: outcome.kind,
      workers: current.map((w) => w.info?.workerId ?? w.name),
      retired_workers: old.map((w) => w.info?.workerId ?? w.name),
    });
  }

  /**
   * Dispatches calls of wave `n` (paced as scheduled) until one of `workers` holds a live call;
   * returns how many it dispatched. Every call is dispatched once, as scheduled; only the
   * moment of the switch moves.
   */
  async #dispatchUntilBusy(workers: readonly WorkerProcess[], n: number): Promise<number> {
    const calls = this.#waves.get(n) ?? [];
    let sent = 0;
    const busy = async () => (await Promise.all(workers.map((w) => w.readSnapshot()))).some((s) => (s?.active_sessions ?? 0) > 0);
    // The wave's last call always goes after the switch: it shows new calls landing on the new version.
    while (sent < calls.length - 1 && !this.#stopped && !(await busy())) {
      await this.#dispatchPaced(calls[sent]!);
      sent++;
      // Long enough for the offer to be answered and the session to show in the snapshot.
      await this.#until("the call to be placed", 15_000, async () => (await busy()) || this.#o.backend.pending() === 0).catch(() => undefined);
    }
    return sent;
  }

  async #dispatchPaced(call: PlannedCall): Promise<void> {
    await sleep(call.gapMs);
    if (this.#stopped) return;
    await this.#o.backend.dispatch(call);
    this.dispatched++;
  }

  /** Dispatches one traffic wave (from its `from`-th call), pacing calls by their scheduled gaps. */
  async #wave(n: number, from = 0): Promise<void> {
    for (const call of (this.#waves.get(n) ?? []).slice(from)) {
      if (this.#stopped) return;
      await this.#dispatchPaced(call);
    }
  }

  /** Polls `check` every 100 ms until true; `wake` resolving re-checks at once. */
  async #until(what: string, timeoutMs: number, check: () => Promise<boolean>, wake?: () => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let woke = false;
    let failure: unknown;
    void wake?.().then(
      () => (woke = true),
      (error: unknown) => (failure = error),
    );
    for (;;) {
      if (failure !== undefined) throw failure;
      if (this.#stopped) throw new Error(`stopped while waiting for ${what}`);
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(woke ? 20 : 100);
    }
  }
}
