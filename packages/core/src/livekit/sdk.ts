// Every private or @internal surface of @livekit/agents 1.9 the binding leans on, in one place.
// agents-js offers no public hook for "tell LiveKit the worker is full now", "report a job's
// end", or "keep the load report full while we drain", so the binding reaches these. Each is
// listed in the package README, checked at bind time (`sdkSurfaceProblems`), and covered by
// sdk.test.ts, so an upgrade that removes one fails loudly at startup and in CI instead of
// silently dropping calls in production.
import { AsyncLocalStorage } from "node:async_hooks";
import type { ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { basename, dirname } from "node:path";
import { createConnection, type Socket } from "node:net";
import { AgentServer, JobContext, JobRequest, ServerOptions } from "@livekit/agents";

/** The agents-js releases the binding is tested against (also the package's peer range). */
export const TESTED_AGENTS_RANGE = ">=1.9.0 <1.10.0";

/**
 * agents-js 1.9 waits this long for a JobAssignment after accepting (worker.js
 * `ASSIGNMENT_TIMEOUT`, not exported). Copied: a launch budget shorter than it would count a
 * call that is still being assigned as never started.
 */
export const ASSIGNMENT_TIMEOUT_MS = 7500;

/** The load reported with an explicit "full" status (what `AgentServer.drain` sends). */
export const FULL_LOAD = 1;

type ServerOptionsInit = ConstructorParameters<typeof ServerOptions>[0];
export type LoadFunc = NonNullable<ServerOptionsInit["loadFunc"]>;

interface Protocol {
  WorkerMessage: new (init: unknown) => unknown;
  WorkerStatus: Record<string, number>;
  JobStatus: Record<string, number>;
  AgentDev?: { AgentDevMessage: new (init: unknown) => { toBinary(): Uint8Array }; ServerInfo: new (init: unknown) => unknown };
}

/**
 * The `@livekit/protocol` copy that @livekit/agents itself loaded (nested under its install):
 * messages built from another copy would not be the classes its socket serialises. Loaded
 * once, at bind time: a synchronous require on the SIGTERM path costs ~50 ms.
 */
export function loadProtocol(): Protocol {
  return createRequire(import.meta.resolve("@livekit/agents"))("@livekit/protocol") as Protocol;
}

/**
 * What is missing from the installed agents-js, as sentences naming the surface and what to
 * do; empty when everything the binding needs is there.
 */
export function sdkSurfaceProblems(proto: Protocol = loadProtocol()): string[] {
  const problems: string[] = [];
  const fix = `OpenRTC is tested with @livekit/agents ${TESTED_AGENTS_RANGE}; install a tested version or upgrade @openrtc/core`;
  if (typeof AgentServer?.prototype?.drain !== "function") problems.push(`AgentServer.prototype.drain is gone (the binding routes it through the pool drain). ${fix}`);
  if (typeof JobRequest !== "function" || JobRequest.length < 3) problems.push(`new JobRequest(job, onReject, onAccept) (@internal) changed shape (the binding wraps the user's requestFunc with it). ${fix}`);
  // Public in 1.9's d.ts but undocumented: without it a job process cannot prove its job to a
  // parent that verifies job tokens, and every job would be refused.
  if (typeof Object.getOwnPropertyDescriptor(JobContext?.prototype ?? {}, "info")?.get !== "function") {
    problems.push(`JobContext.prototype.info (RunningJobInfo, whose token each job process presents to the parent) is gone. ${fix}`);
  }
  if (typeof proto.WorkerMessage !== "function") problems.push(`@livekit/protocol WorkerMessage is not loadable next to @livekit/agents (the binding sends "full" and job status with it). ${fix}`);
  if (proto.WorkerStatus?.WS_FULL === undefined) problems.push(`@livekit/protocol WorkerStatus.WS_FULL is gone. ${fix}`);
  if (proto.JobStatus?.JS_SUCCESS === undefined || proto.JobStatus?.JS_FAILED === undefined) problems.push(`@livekit/protocol JobStatus.JS_SUCCESS/JS_FAILED are gone. ${fix}`);
  const a = new ServerOptions({ agent: "probe" }).loadFunc;
  const b = new ServerOptions({ agent: "probe" }).loadFunc;
  if (a !== b) problems.push(`ServerOptions no longer shares one default loadFunc (the binding tells the SDK's default CPU load apart from a custom one by identity). ${fix}`);
  return problems;
}

/** The SDK's default load function (CPU), by identity: what it keeps when given a worker token. */
export function sdkDefaultLoad(): LoadFunc {
  return new ServerOptions({ agent: "probe" }).loadFunc;
}

/**
 * Sends a message on the worker's LiveKit socket. `server.event` and its `worker_msg` event are
 * how the SDK's own code writes to the socket (worker.js `#runWS` subscribes `send` to it);
 * there is no public send.
 */
function sendWorkerMessage(proto: Protocol, server: AgentServer, message: unknown): void {
  server.event.emit("worker_msg", new proto.WorkerMessage({ message }));
}

/** Tells LiveKit at once that this worker takes no new jobs (as `AgentServer.drain` does). */
export function sendFull(proto: Protocol, server: AgentServer): void {
  sendWorkerMessage(proto, server, { case: "updateWorker", value: { status: proto.WorkerStatus.WS_FULL, load: FULL_LOAD } });
}

/** Reports a job's end to LiveKit (UpdateJobStatus), which agents-js 1.9 never does itself. */
export function sendJobStatus(proto: Protocol, server: AgentServer, jobId: string, success: boolean, error: string): void {
  const status = success ? proto.JobStatus.JS_SUCCESS : proto.JobStatus.JS_FAILED;
  sendWorkerMessage(proto, server, { case: "updateJob", value: { jobId, status, error } });
}

/** What the binding reads on agents-js' job-process supervisor (`dist/ipc/job_proc_executor.js`). */
interface JobProcExecutorLike {
  readonly runningJob: unknown;
  readonly init: { readonly done: boolean };
  readonly proc: ChildProcess | undefined;
}
interface JobProcExecutorClass {
  prototype: { close(this: JobProcExecutorLike): Promise<void> };
}

/**
 * agents-js internals that are not exported: its job-process supervisor class, from the very
 * files the exported `AgentServer` runs (`sameInstall` says the loaded `worker.js` is the one
 * `@livekit/agents` resolves to here, so a patch reaches the processes that server forks).
 */
export interface SdkInternals {
  JobProcExecutor: JobProcExecutorClass | undefined;
  sameInstall: boolean;
}

let internals: Promise<SdkInternals> | undefined;

/** Loads {@link SdkInternals} once (an ESM import of two files beside `@livekit/agents`' index). */
export function loadSdkInternals(): Promise<SdkInternals> {
  internals ??= (async () => {
    try {
      // Inside the try: a bundler may leave import.meta.resolve undefined, or the package may not
      // resolve from here; either way the worker still starts (only its exit is slower).
      const index = import.meta.resolve("@livekit/agents");
      const [worker, executor] = await Promise.all([import(new URL("./worker.js", index).href), import(new URL("./ipc/job_proc_executor.js", index).href)]);
      const JobProcExecutor = (executor as { JobProcExecutor?: JobProcExecutorClass }).JobProcExecutor;
      return { JobProcExecutor: typeof JobProcExecutor === "function" ? JobProcExecutor : undefined, sameInstall: (worker as { AgentServer?: unknown }).AgentServer === AgentServer };
    } catch {
      return { JobProcExecutor: undefined, sameInstall: false };
    }
  })();
  return internals;
}

/**
 * Why idle job processes that are still starting cannot be closed at once here (see
 * {@link closingIdleJobProcesses}), or undefined when they can.
 */
export function idleCloseProblem(sdk: SdkInternals): string | undefined {
  const proto = sdk.JobProcExecutor?.prototype as (Record<string | symbol, unknown> & object) | undefined;
  if (proto === undefined || typeof proto.close !== "function" || Object.getOwnPropertyDescriptor(proto, "runningJob")?.get === undefined) {
    return "@livekit/agents dist/ipc/job_proc_executor.js (JobProcExecutor with close() and runningJob) is gone";
  }
  if (!sdk.sameInstall) return "the @livekit/agents files beside its resolved index are not the copy this AgentServer comes from (bundled, or installed twice)";
  return undefined;
}

const fastIdleClose = new AsyncLocalStorage<true>();
const PATCHED = Symbol.for("openrtc.livekit.fastIdleClose");

/**
 * Runs `fn` (an `AgentServer.close()` or `drain()`) so that the job processes it closes that
 * hold no job and never finished initialising are killed at once instead of waiting out
 * `shutdownProcessTimeout`.
 *
 * Why: agents-js 1.9 closes every job process by sending it a `shutdownRequest` and waits up to
 * `shutdownProcessTimeout` for the acknowledgement before SIGKILL (ipc/supervised_proc.js
 * `closeOnce`). A warm process still importing the agent file has not listened to its IPC yet,
 * so Node queues both the `initializeRequest` and the `shutdownRequest`; the child's first
 * `once("message")` takes the first and the second is emitted to no listener and lost. The
 * process never acknowledges, and a drained worker waits the whole timeout to exit (10 s in
 * the demo, 60 s by default) — the replacement warm process the SDK forks for every call is
 * often in exactly that state.
 *
 * Only a process with no job (`runningJob` unset: the SDK sets it before it sends the job, and
 * never clears it) that has not initialised (`init` not done: the SDK hands jobs only to
 * initialised processes) is killed, and only inside `fn`: a process that ever ran a job still
 * gets the SDK's graceful shutdown, and every other caller of `close()` sees the SDK unchanged.
 * Callers pass `fn` only once the pool holds no live session and accepts no job.
 */
export function closingIdleJobProcesses<T>(sdk: SdkInternals, fn: () => Promise<T>): Promise<T> {
  if (idleCloseProblem(sdk) !== undefined) return fn();
  const proto = sdk.JobProcExecutor!.prototype as JobProcExecutorClass["prototype"] & { [PATCHED]?: true };
  if (proto[PATCHED] !== true) {
    const close = proto.close;
    proto.close = function (this: JobProcExecutorLike) {
      const closing = close.call(this);
      const child = this.proc;
      if (fastIdleClose.getStore() === true && this.runningJob === undefined && this.init?.done === false && child !== undefined && child.exitCode === null && child.signalCode === null) {
        // The SDK's close is under way (its exit handler resolves the wait it started).
        child.kill("SIGKILL");
      }
      return closing;
    };
    proto[PATCHED] = true;
  }
  return fastIdleClose.run(true, fn);
}

/**
 * Whether this process is one of the SDK's forked job or inference processes. They import the
 * agent file, which often is the very file that calls `runApp`; there it must do nothing.
 * agents-js forks `dist/ipc/job_proc_lazy_main.js` / `inference_proc_lazy_main.js` (its own
 * check in cli.js names a `job_main.js` that 1.9 no longer has, and only works by accident).
 */
export function isSdkChildProcess(argv1: string | undefined = process.argv[1]): boolean {
  if (argv1 === undefined) return false;
  return basename(dirname(argv1)) === "ipc" && /^(job|inference)_proc_lazy_main\.[cm]?js$/.test(basename(argv1));
}

/**
 * `lk agent dev --cli-addr host:port`: tells the LiveKit CLI this worker's agent name and URL,
 * as agents-js' internal CLIClient does (a 4-byte big-endian length, then an
 * `AgentDevMessage{serverInfo}`). The dev channel is best effort: failures are only logged.
 */
export function startDevChannel(proto: Protocol, cliAddr: string, agentName: string, url: string, warn: (msg: string) => void): { close(): void } {
  const sep = cliAddr.lastIndexOf(":");
  const port = Number(cliAddr.slice(sep + 1));
  let host = cliAddr.slice(0, Math.max(0, sep));
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (sep === -1 || !Number.isInteger(port) || port < 0 || port > 65535 || proto.AgentDev === undefined) {
    warn(`--cli-addr ${JSON.stringify(cliAddr)} is not host:port (or this @livekit/protocol has no AgentDev); skipping the dev channel`);
    return { close() {} };
  }
  const dev = proto.AgentDev;
  let socket: Socket | undefined = createConnection({ host, port }, () => {
    const payload = new dev.AgentDevMessage({ message: { case: "serverInfo", value: new dev.ServerInfo({ agentName, url }) } }).toBinary();
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(payload.length, 0);
    socket?.write(Buffer.concat([header, payload]));
  });
  socket.on("error", (error) => warn(`dev channel unavailable: ${error.message}`));
  return {
    close() {
      socket?.destroy();
      socket = undefined;
    },
  };
}
