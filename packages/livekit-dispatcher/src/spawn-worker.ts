import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The launcher shipped with this package: starts one real AgentServer from env vars (see README). */
export const workerLauncherPath: string = fileURLToPath(new URL("../test/fixtures/worker.mjs", import.meta.url));
/** The hold-call test agent shipped with this package. */
export const holdCallAgentPath: string = fileURLToPath(new URL("../test/fixtures/hold-call-agent.mjs", import.meta.url));

/** IPC messages the launcher sends to its parent. */
export type LauncherMessage =
  | { type: "registered"; workerId: string }
  | { type: "drained" }
  | { type: "drain_failed"; error: string }
  | { type: "closed" };

/** IPC commands the launcher understands. */
export type LauncherCommand = { type: "drain"; timeoutMs?: number } | { type: "close" };

export interface SpawnWorkerOptions {
  /** Agent file the worker's job processes import (default: the hold-call agent). */
  agentFile?: string;
  /** Script to run (default: this package's launcher, test/fixtures/worker.mjs). */
  script?: string;
  /** Added to (and overriding) the parent's environment. */
  env?: Record<string, string | undefined>;
  args?: string[];
  /** Put the worker in its own process group so `kill(sig, { group: true })` also ends its job processes. Default true. */
  detached?: boolean;
  /** SIGKILL the worker's process group when this process exits, so a crashed test leaks nothing. Default true. */
  killOnParentExit?: boolean;
}

export interface SpawnedWorker {
  child: ChildProcess;
  pid: number;
  /** Resolves with the worker id once the launcher reports registration; rejects if the process exits first. */
  registered: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Signal the worker; `group: true` signals its whole process group (worker, job and inference processes). */
  kill(signal?: NodeJS.Signals, opts?: { group?: boolean }): void;
  /** Send an IPC command to the launcher (ignored when the process is gone). */
  send(command: LauncherCommand): void;
  /** Next IPC message of `type`, or rejection when the process exits first. */
  nextMessage<T extends LauncherMessage["type"]>(type: T): Promise<Extract<LauncherMessage, { type: T }>>;
}

/** Runs a worker as a real child process (node + IPC channel); stdout/stderr are inherited. */
export function spawnWorker(opts: SpawnWorkerOptions = {}): SpawnedWorker {
  const script = opts.script ?? workerLauncherPath;
  const detached = opts.detached ?? true;
  const env: NodeJS.ProcessEnv = { ...process.env, AGENT_FILE: opts.agentFile ?? holdCallAgentPath };
  // Entries in opts.env win, and `undefined` removes a variable (e.g. to test a missing one).
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const child = spawn(process.execPath, [script, ...(opts.args ?? [])], {
    env,
    detached,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  if (child.pid === undefined) throw new Error(`spawnWorker: could not start ${process.execPath} ${script}`);
  const pid = child.pid;
  // A detached worker outlives us unless killed; 'exit' handlers must be synchronous.
  const reap = () => {
    try {
      process.kill(detached ? -pid : pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  if (opts.killOnParentExit ?? true) process.once("exit", reap);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      if (!detached) process.off("exit", reap);
      resolve({ code, signal });
    });
  });
  const nextMessage = <T extends LauncherMessage["type"]>(type: T) =>
    new Promise<Extract<LauncherMessage, { type: T }>>((resolve, reject) => {
      const onMessage = (m: LauncherMessage) => {
        if (m && m.type === type) {
          child.off("message", onMessage);
          resolve(m as Extract<LauncherMessage, { type: T }>);
        }
      };
      child.on("message", onMessage);
      void exited.then(({ code, signal }) => {
        child.off("message", onMessage);
        reject(new Error(`worker ${pid} exited (code ${code}, signal ${signal}) before sending "${type}"`));
      });
    });
  const registered = nextMessage("registered").then((m) => m.workerId);
  registered.catch(() => {});
  return {
    child,
    pid,
    registered,
    exited,
    nextMessage,
    kill(signal = "SIGTERM", { group = false } = {}) {
      if (child.exitCode !== null || child.signalCode !== null) {
        if (!group) return;
      }
      try {
        process.kill(group && detached ? -pid : pid, signal);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
      }
    },
    send(command) {
      if (child.connected) child.send(command);
    },
  };
}
