// Spawns and tracks worker processes (apps/demo/src/worker.ts), each a real @livekit/agents
// AgentServer with OpenRTC attached, and polls their control servers for runtime snapshots.
// A worker is driven only the way a platform drives a pod: environment at start, signals
// after, HTTP to read its state.
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { AuditRecord, RuntimeSnapshotJSON } from "@openrtc/core";

/** The worker entry this module launches. */
export const workerScriptPath: string = fileURLToPath(new URL("./worker.ts", import.meta.url));

/** Node flags a worker (and, through execArgv, its job processes) runs with: TypeScript sources via tsx. */
export function workerExecArgv(): string[] {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  return ["--conditions=@openrtc/source", "--import", tsx];
}

/** IPC messages worker.ts sends. */
export type WorkerMessage =
  | { type: "ready"; workerId: string; controlUrl: string; pid: number }
  | { type: "state"; state: string }
  | { type: "audit"; records: AuditRecord[] };

export interface ReadyInfo {
  workerId: string;
  controlUrl: string;
  pid: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface FleetOptions {
  /** LiveKit (or local dispatcher) URL and credentials handed to every worker. */
  livekitUrl: string;
  apiKey: string;
  apiSecret: string;
  /** Signed manifest file every worker watches (OPENRTC_MANIFEST_FILE). */
  manifestFile?: string;
  membershipSecrets?: readonly string[];
  drainTimeoutMs?: number;
  /** Extra environment for every worker (e.g. HOLD_CALL_MARKER_DIR). */
  env?: Record<string, string | undefined>;
  /** Where workers' stdout/stderr go. Default: "pipe" and discarded unless `onOutput` is set. */
  stdio?: "inherit" | "pipe" | "ignore";
  onOutput?: (worker: WorkerProcess, stream: "stdout" | "stderr", chunk: Buffer) => void;
  /** Worker audit records, already hash-chained by the worker: write them as they are. */
  onAudit?: (records: AuditRecord[], worker: WorkerProcess) => void;
  /** How often `poll` asks each live worker for its snapshot. Default 250 ms. */
  pollIntervalMs?: number;
}

export interface WorkerSpec {
  /** Display name, e.g. `v1-a`. Unique in the fleet. */
  name: string;
  /** OPENRTC_DEPLOYMENT_VERSION */
  version: string;
  env?: Record<string, string | undefined>;
}

/** One worker process. */
export class WorkerProcess {
  readonly name: string;
  readonly version: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves once the worker registered with LiveKit; rejects if it exits first. */
  readonly ready: Promise<ReadyInfo>;
  readonly exited: Promise<ExitInfo>;
  readonly startedAt = Date.now();
  info: ReadyInfo | undefined;
  exit: ExitInfo | undefined;
  /** Newest snapshot read from the control server (kept after exit: the last one seen). */
  snapshot: RuntimeSnapshotJSON | undefined;
  /** When SIGTERM was sent (ms since epoch). */
  terminatedAt: number | undefined;
  /** Pool state from the worker's IPC `state` messages. */
  state = "starting";
  /** `dropped_sessions` of the worker's own `worker.exited` audit record, once it arrived. */
  droppedSessions: number | undefined;
  /** When its `deployment.drain_started` audit record says the drain began (Unix seconds). */
  drainStartedAt: number | undefined;
  /** When the process exited (ms since epoch). */
  exitedAt: number | undefined;
  /** Every id LiveKit gave this worker (one per registration), oldest first. */
  readonly workerIds: string[] = [];

  constructor(name: string, version: string, child: ChildProcess) {
    this.name = name;
    this.version = version;
    this.child = child;
    if (child.pid === undefined) throw new Error(`fleet: could not start worker ${name}`);
    this.pid = child.pid;
    // Exited = the process is gone AND its IPC channel is closed, so every audit record it sent
    // before exiting has been received.
    const disconnected = new Promise<void>((resolve) => {
      if (!child.connected) resolve();
      child.once("disconnect", resolve);
    });
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitedAt = Date.now();
        void disconnected.then(() => {
          this.exit = { code, signal };
          resolve(this.exit);
        });
      });
    });
    this.ready = new Promise((resolve, reject) => {
      const onMessage = (m: WorkerMessage) => {
        if (m?.type === "ready") {
          child.off("message", onMessage);
          this.info = { workerId: m.workerId, controlUrl: m.controlUrl, pid: m.pid };
          resolve(this.info);
        }
      };
      child.on("message", onMessage);
      void this.exited.then(({ code, signal }) => {
        child.off("message", onMessage);
        reject(new Error(`worker ${name} (pid ${this.pid}) exited (code ${code}, signal ${signal}) before it registered`));
      });
    });
    this.ready.catch(() => {});
    child.on("message", (m: WorkerMessage) => {
      if (m?.type === "state") this.state = m.state;
      // LiveKit gives a worker that registers again (after its socket dropped) a new id.
      if (m?.type === "ready") {
        if (!this.workerIds.includes(m.workerId)) this.workerIds.push(m.workerId);
        if (this.info !== undefined) this.info = { ...this.info, workerId: m.workerId };
      }
      if (m?.type === "audit" && Array.isArray(m.records)) {
        for (const r of m.records) {
          if (r.event === "worker.exited") this.droppedSessions = Number(r.dropped_sessions ?? 0);
          if (r.event === "deployment.drain_started") this.drainStartedAt ??= r.timestamp;
        }
      }
    });
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  get controlUrl(): string | undefined {
    return this.info?.controlUrl;
  }

  /** Sends an IPC message to the worker (ignored once it is gone). */
  send(message: unknown): void {
    if (this.alive && this.child.connected) this.child.send(message as object);
  }

  /** Sends a signal to the worker process itself (not its job processes). */
  signal(signal: NodeJS.Signals = "SIGTERM"): void {
    if (!this.alive) return;
    if (signal === "SIGTERM" && this.terminatedAt === undefined) this.terminatedAt = Date.now();
    try {
      process.kill(this.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }

  /** SIGKILLs the worker's whole process group (worker, job and inference processes). */
  killGroup(): void {
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** GETs `path` on the control server: status and parsed JSON body. */
  async get(path: string): Promise<{ status: number; body: unknown }> {
    const url = this.controlUrl;
    if (url === undefined) throw new Error(`worker ${this.name} has no control URL yet (not registered)`);
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON (e.g. /metrics)
    }
    return { status: res.status, body };
  }

  /** Reads a fresh snapshot (and keeps it as `snapshot`); undefined when the worker is gone. */
  async readSnapshot(): Promise<RuntimeSnapshotJSON | undefined> {
    if (!this.alive || this.controlUrl === undefined) return undefined;
    try {
      const { status, body } = await this.get("/snapshot");
      if (status !== 200) return undefined;
      this.snapshot = body as RuntimeSnapshotJSON;
      return this.snapshot;
    } catch {
      return undefined; // exiting between the check and the request
    }
  }
}

/** The worker processes of one run. */
export class Fleet {
  readonly #options: FleetOptions;
  readonly #workers: WorkerProcess[] = [];
  #pollTimer: NodeJS.Timeout | undefined;
  #polling = false;
  readonly #reap = () => {
    for (const w of this.#workers) if (w.alive) w.killGroup();
  };

  constructor(options: FleetOptions) {
    this.#options = options;
    // Workers run in their own process groups (so a test can kill one with its job processes);
    // make sure none outlives this process if it dies without closing the fleet.
    process.once("exit", this.#reap);
  }

  get workers(): readonly WorkerProcess[] {
    return this.#workers;
  }

  live(): WorkerProcess[] {
    return this.#workers.filter((w) => w.alive);
  }

  byName(name: string): WorkerProcess | undefined {
    return this.#workers.find((w) => w.name === name);
  }

  spawn(spec: WorkerSpec): WorkerProcess {
    if (this.byName(spec.name) !== undefined) throw new Error(`fleet: a worker named ${spec.name} already exists`);
    const o = this.#options;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      LIVEKIT_URL: o.livekitUrl,
      LIVEKIT_API_KEY: o.apiKey,
      LIVEKIT_API_SECRET: o.apiSecret,
      OPENRTC_DEPLOYMENT_VERSION: spec.version,
      OPENRTC_CONTROL_PORT: "0",
      // runApp reads LOG_LEVEL as cli.runApp does (default info): keep the demo's output to warnings.
      LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
    };
    if (o.manifestFile !== undefined) env.OPENRTC_MANIFEST_FILE = o.manifestFile;
    if (o.membershipSecrets !== undefined) env.OPENRTC_MEMBERSHIP_SECRETS = o.membershipSecrets.join(",");
    if (o.drainTimeoutMs !== undefined) env.OPENRTC_DRAIN_TIMEOUT_MS = String(o.drainTimeoutMs);
    for (const [k, v] of Object.entries({ ...o.env, ...spec.env })) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    const stdio = o.stdio ?? "pipe";
    const child = spawn(process.execPath, [...workerExecArgv(), workerScriptPath, "start"], {
      env,
      detached: true,
      stdio: ["ignore", stdio, stdio, "ipc"],
    });
    const worker = new WorkerProcess(spec.name, spec.version, child);
    this.#workers.push(worker);
    child.on("message", (m: WorkerMessage) => {
      if (m?.type === "audit" && Array.isArray(m.records)) o.onAudit?.(m.records, worker);
    });
    child.stdout?.on("data", (chunk: Buffer) => o.onOutput?.(worker, "stdout", chunk));
    child.stderr?.on("data", (chunk: Buffer) => o.onOutput?.(worker, "stderr", chunk));
    return worker;
  }

  /** Reads every live worker's snapshot once. */
  async pollOnce(): Promise<void> {
    await Promise.all(this.live().map((w) => w.readSnapshot()));
  }

  /** Polls snapshots in the background until `stopPolling` (or `close`). */
  startPolling(onPoll?: () => void): void {
    if (this.#pollTimer !== undefined) return;
    const tick = async () => {
      if (this.#polling) return;
      this.#polling = true;
      try {
        await this.pollOnce();
        onPoll?.();
      } finally {
        this.#polling = false;
      }
    };
    this.#pollTimer = setInterval(() => void tick(), this.#options.pollIntervalMs ?? 250);
    void tick();
  }

  stopPolling(): void {
    if (this.#pollTimer !== undefined) clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  /** Stops polling and SIGKILLs whatever is still running (a clean run has nothing left). */
  async close(): Promise<void> {
    this.stopPolling();
    const left = this.live();
    for (const w of left) w.killGroup();
    await Promise.all(left.map((w) => w.exited));
    process.off("exit", this.#reap);
  }
}
