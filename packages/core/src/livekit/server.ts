import { createRequire } from "node:module";
import { AgentServer, JobRequest, ServerOptions } from "@livekit/agents";
import type { AgentPool, Session } from "../pool.ts";
import type { SessionInfo, SessionOutcome } from "../sessions.ts";
import { JobRejectedError } from "../drain.ts";
import { DEPLOYMENT_VERSION_ENV } from "./agent.ts";
import { SESSION_SOCKET_ENV, SessionChannel, type SessionChannelOptions } from "./session-channel.ts";

type ServerOptionsInit = ConstructorParameters<typeof ServerOptions>[0];
type RequestFunc = NonNullable<ServerOptionsInit["requestFunc"]>;
type LoadFunc = NonNullable<ServerOptionsInit["loadFunc"]>;

/** The load reported with an explicit "full" status. */
const FULL_LOAD = 1;
/** `@livekit/agents` 1.9 waits this long for an assignment after accepting (worker.ts). */
const ASSIGNMENT_TIMEOUT_MS = 7500;

export interface AttachOptions extends SessionChannelOptions {}

export interface OpenRTCBinding {
  readonly pool: AgentPool;
  readonly channel: SessionChannel;
  /** ServerOptions whose requestFunc/loadFunc go through the pool. */
  readonly options: ServerOptions;
  /** Binds a constructed AgentServer (done for you by `createAgentServer`). */
  attach(server: AgentServer): void;
  close(): Promise<void>;
}

/**
 * Puts an `AgentPool` in charge of a LiveKit worker's admission and drain:
 *
 * - every job request is decided by the pool (draining, membership, metadata); a refused job is
 *   answered unavailable and recorded as `worker.rejected`; the user's own `requestFunc` still
 *   runs for jobs the pool admits;
 * - `pool.beginDrain()` (SIGTERM, `POST /drain`, a coordinator) tells LiveKit the worker is full
 *   at once, and `server.drain()` (what `cli.runApp` calls on SIGTERM) goes through the same
 *   pool drain: one shutdown path, whoever starts it;
 * - the worker's `deployment_version` is registered with LiveKit (`deployment`) and passed to
 *   every job process.
 *
 * Must run before the server forks its job processes (i.e. before `server.run()`).
 */
export async function bindAgentPool(pool: AgentPool, init: ServerOptionsInit, options: AttachOptions = {}): Promise<OpenRTCBinding> {
  // Loaded now, not on the first drain: a synchronous require on the SIGTERM path costs ~50 ms.
  const proto = loadProtocol();
  // An accepted job whose process the SDK is still starting is a live call: give the SDK its
  // whole assignment wait and process-initialisation budget before calling it never started.
  const initTimeoutMs = init.initializeProcessTimeout ?? 10_000;
  const channel = await SessionChannel.listen(pool, { launchTimeoutMs: initTimeoutMs + ASSIGNMENT_TIMEOUT_MS + 5000, ...options });
  // Job processes are forked with the parent's environment: this is how they find the channel
  // and learn the version. LiveKit reads LIVEKIT_AGENT_DEPLOYMENT when the server is built.
  process.env[SESSION_SOCKET_ENV] = channel.path;
  if (pool.deploymentVersion !== null) {
    process.env[DEPLOYMENT_VERSION_ENV] = pool.deploymentVersion;
    process.env.LIVEKIT_AGENT_DEPLOYMENT = pool.deploymentVersion;
  }

  const servers = new Set<AgentServer>();
  // Jobs this worker told LiveKit it takes: their end is reported back (UpdateJobStatus), as
  // the Python SDK does, so LiveKit never holds a finished or failed job as running.
  const accepted = new Set<string>();
  const userRequest = init.requestFunc;
  const userLoad = init.loadFunc;

  const requestFunc: RequestFunc = async (req) => {
    const job = req.job;
    let session: Session;
    try {
      session = pool.startSession({ jobId: job.id, agentName: job.agentName, roomName: job.room?.name ?? "", metadata: job.metadata });
    } catch (error) {
      if (!(error instanceof JobRejectedError)) {
        pool.logger.warn({ job_id: job.id, err: error instanceof Error ? error.message : String(error) }, "job refused");
      }
      await req.reject();
      return;
    }
    if (userRequest === undefined) {
      accepted.add(job.id);
      await req.accept();
      channel.expectLaunch(session);
      return;
    }
    let answered = false;
    const proxy = new JobRequest(
      job,
      async () => {
        answered = true;
        session.end({ status: "cancelled", error: "rejected by the application's requestFunc" });
        await req.reject();
      },
      async (args: { name: string; identity: string; metadata: string; attributes?: Record<string, string> }) => {
        answered = true;
        accepted.add(job.id);
        await req.accept(args.name, args.identity, args.metadata, args.attributes);
        channel.expectLaunch(session);
      },
    );
    try {
      await userRequest(proxy);
    } catch (error) {
      if (!answered) session.end({ status: "cancelled", error: `requestFunc threw: ${error instanceof Error ? error.message : String(error)}` });
      throw error;
    }
    if (!answered) {
      // LiveKit would wait forever for an answer that never comes; refuse instead.
      session.end({ status: "cancelled", error: "requestFunc returned without accepting or rejecting" });
      await req.reject();
    }
  };

  const loadFunc: LoadFunc = async (server) => {
    attach(server);
    // At or above the threshold, whatever it is (Infinity outside production), or the SDK's
    // periodic load report would mark a draining worker available again.
    if (!pool.accepting) return Math.max(FULL_LOAD, serverOptions.loadThreshold);
    return userLoad !== undefined ? userLoad(server) : defaultLoad(server);
  };

  // LiveKit's own default (CPU load), taken from a throwaway ServerOptions.
  const defaultLoad = new ServerOptions({ agent: init.agent }).loadFunc;

  const serverOptions = new ServerOptions({ ...init, requestFunc, loadFunc });

  const onState = () => {
    if (pool.accepting) return;
    for (const server of servers) sendFull(proto, server);
  };
  const onSessionEnded = (info: SessionInfo, outcome: SessionOutcome) => {
    if (!accepted.delete(info.jobId)) return;
    for (const server of servers) sendJobStatus(proto, server, info.jobId, outcome);
  };
  pool.on("state", onState);
  pool.on("membership", onState);
  pool.on("sessionEnded", onSessionEnded);

  function attach(server: AgentServer): void {
    if (servers.has(server)) return;
    servers.add(server);
    server.event.on("worker_registered", (workerId: string) => {
      pool.markReady({ workerId });
      // A "full" sent before the socket was up is lost: say it again on every registration.
      if (!pool.accepting) sendFull(proto, server);
    });
    const originalDrain = server.drain.bind(server);
    // cli.runApp drains with server.drain() on SIGTERM: route it through the pool so the drain
    // is audited, rejections are recorded, and nothing is cut at LiveKit's drain timeout.
    server.drain = async (timeout?: number) => {
      pool.beginDrain({ actor: "livekit:drain", reason: "AgentServer.drain()" });
      await pool.drained;
      await originalDrain(timeout);
    };
    if (!pool.accepting) sendFull(proto, server);
  }

  return {
    pool,
    channel,
    options: serverOptions,
    attach,
    async close() {
      pool.off("state", onState);
      pool.off("membership", onState);
      pool.off("sessionEnded", onSessionEnded);
      await channel.close();
    },
  };
}

/**
 * Builds an `AgentServer` bound to the pool. Equivalent to `bindAgentPool` + `new AgentServer`
 * + `attach`.
 */
export async function createAgentServer(pool: AgentPool, init: ServerOptionsInit, options: AttachOptions = {}): Promise<{ server: AgentServer; binding: OpenRTCBinding }> {
  const binding = await bindAgentPool(pool, init, options);
  const server = new AgentServer(binding.options);
  binding.attach(server);
  return { server, binding };
}

interface Protocol {
  WorkerMessage: new (init: unknown) => unknown;
  WorkerStatus: Record<string, number>;
  JobStatus: Record<string, number>;
}

/** The protocol classes of the @livekit/agents copy in use, whatever this package resolves. */
function loadProtocol(): Protocol {
  return createRequire(import.meta.resolve("@livekit/agents"))("@livekit/protocol") as Protocol;
}

/** Tells LiveKit at once that this worker takes no new jobs (as `AgentServer.drain` does). */
function sendFull(proto: Protocol, server: AgentServer): void {
  server.event.emit("worker_msg", new proto.WorkerMessage({ message: { case: "updateWorker", value: { status: proto.WorkerStatus.WS_FULL, load: FULL_LOAD } } }));
}

function sendJobStatus(proto: Protocol, server: AgentServer, jobId: string, outcome: SessionOutcome): void {
  const status = outcome.status === "success" ? proto.JobStatus.JS_SUCCESS : proto.JobStatus.JS_FAILED;
  const error = outcome.status === "success" ? "" : (outcome.error ?? outcome.status);
  server.event.emit("worker_msg", new proto.WorkerMessage({ message: { case: "updateJob", value: { jobId, status, error } } }));
}
