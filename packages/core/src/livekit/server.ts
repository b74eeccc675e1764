import { createServer } from "node:net";
import { AgentServer, JobRequest, ServerOptions } from "@livekit/agents";
import { settlePoolSettings, type AgentPool, type Session } from "../pool.ts";
import type { SessionInfo, SessionOutcome } from "../sessions.ts";
import { JobRejectedError } from "../drain.ts";
import { DEPLOYMENT_VERSION_ENV } from "./agent.ts";
import { DEPLOYMENT_VERSION_ATTRIBUTE, resolveLivekitDeployment, type DeploymentRoutingOptions } from "./deployment.ts";
import { ASSIGNMENT_TIMEOUT_MS, closingIdleJobProcesses, FULL_LOAD, idleCloseProblem, loadProtocol, loadSdkInternals, sdkDefaultLoad, sdkSurfaceProblems, sendFull, sendJobStatus, type LoadFunc } from "./sdk.ts";
import { defaultAgentIdentity } from "./job-token.ts";
import { SessionChannel, type SessionChannelOptions } from "./session-channel.ts";

export type ServerOptionsInit = ConstructorParameters<typeof ServerOptions>[0];
type RequestFunc = NonNullable<ServerOptionsInit["requestFunc"]>;

export interface AttachOptions extends SessionChannelOptions, DeploymentRoutingOptions {}

export interface OpenRTCBinding {
  readonly pool: AgentPool;
  readonly channel: SessionChannel;
  /** ServerOptions whose requestFunc/loadFunc go through the pool. */
  readonly options: ServerOptions;
  /** The deployment (LiveKit routing key) this worker registers with. */
  readonly livekitDeployment: string;
  /** Binds a constructed AgentServer (done for you by `createAgentServer` and `runApp`). */
  attach(server: AgentServer): void;
  close(): Promise<void>;
}

/**
 * Puts an `AgentPool` in charge of a LiveKit worker's admission and drain:
 *
 * - every job request is decided by the pool (draining, membership, metadata); a refused job is
 *   answered unavailable and recorded as `worker.rejected`; the user's own `requestFunc` still
 *   runs for jobs the pool admits, and an accept it gives after a drain began is refused;
 * - an accepted job's agent participant carries `openrtc.deployment_version`, so the room and
 *   its webhooks see which version answered;
 * - `pool.beginDrain()` (SIGTERM, `POST /drain`, a coordinator) tells LiveKit the worker is full
 *   at once and keeps every later load report full, and `server.drain()` goes through the same
 *   pool drain: one shutdown path, whoever starts it;
 * - the worker's `deployment_version` is passed to every job process. LiveKit's `deployment`
 *   routing key is left as configured (`livekitDeployment`, else `LIVEKIT_AGENT_DEPLOYMENT`,
 *   else ""), validated by LiveKit's rules;
 * - `server.close()` (and the SDK's drain) called once nothing is live and nothing is accepted
 *   kills the warm job processes that are still starting instead of waiting
 *   `shutdownProcessTimeout` for an answer they cannot give (see `closingIdleJobProcesses`).
 *
 * Must run before the server forks its job processes (i.e. before `server.run()`).
 */
export async function bindAgentPool(pool: AgentPool, init: ServerOptionsInit, options: AttachOptions = {}): Promise<OpenRTCBinding> {
  const { livekitDeployment: _deployment, routeByVersion: _route, ...channelOptions } = options;
  // Checked before anything starts: a bad name would otherwise surface as a registration
  // LiveKit refuses, and a changed SDK as calls dropped mid-drain.
  const { deployment } = resolveLivekitDeployment(pool.deploymentVersion, options);
  // From here the version is copied into job processes and participant attributes.
  settlePoolSettings(pool, "the LiveKit binding (runApp / bindAgentPool)");
  const proto = loadProtocol();
  const problems = sdkSurfaceProblems(proto);
  if (problems.length > 0) throw new Error(`@openrtc/core/livekit cannot drive this @livekit/agents: ${problems.join("; ")}`);
  // Not needed for correctness (without it a drained worker's exit can wait the SDK's
  // shutdownProcessTimeout), so a warning rather than a refusal.
  const sdk = await loadSdkInternals();
  const idleProblem = idleCloseProblem(sdk);
  if (idleProblem !== undefined) pool.logger.warn({}, `${idleProblem}: a drained worker may wait shutdownProcessTimeout for job processes still starting before it exits`);
  // An accepted job whose process the SDK is still starting is a live call: give the SDK its
  // whole assignment wait and process-initialisation budget before calling it never started.
  const initTimeoutMs = init.initializeProcessTimeout ?? 10_000;
  const channel = await SessionChannel.listen(pool, { launchTimeoutMs: initTimeoutMs + ASSIGNMENT_TIMEOUT_MS + 5000, ...channelOptions });
  // Job processes are forked with the parent's environment: this is how they find the channel
  // (set by `listen`) and learn the version. AgentServer reads LIVEKIT_AGENT_DEPLOYMENT when it
  // is constructed, so an explicit livekitDeployment goes there; the version never does (unless
  // routeByVersion).
  if (pool.deploymentVersion !== null) process.env[DEPLOYMENT_VERSION_ENV] = pool.deploymentVersion;
  if ((process.env.LIVEKIT_AGENT_DEPLOYMENT ?? "") !== deployment) process.env.LIVEKIT_AGENT_DEPLOYMENT = deployment;
  // agents-js reads `port || 8081` in production, so an explicit 0 ("any free port", as in
  // Node) would make every worker on a host fight for 8081: pick a free one instead.
  if (init.port === 0) init = { ...init, port: await freePort(init.host ?? "0.0.0.0") };
  const versionAttributes: Record<string, string> = pool.deploymentVersion === null ? {} : { [DEPLOYMENT_VERSION_ATTRIBUTE]: pool.deploymentVersion };

  const servers = new Set<AgentServer>();
  // Jobs this worker told LiveKit it takes: their end is reported back (UpdateJobStatus), as
  // the Python SDK does, so LiveKit never holds a finished or failed job as running.
  const accepted = new Set<string>();
  const userRequest = init.requestFunc;

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
      // Before the accept: the SDK launches the job inside it, and the job process may claim its
      // session before accept returns. The SDK names the participant agent-<job id> here.
      channel.expectLaunch(session, { identity: defaultAgentIdentity(job.id) });
      await req.accept("", "", "", versionAttributes);
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
        // The application may take its time deciding; a drain that began meanwhile wins, so no
        // job is accepted after the worker said it is full (LiveKit tries another worker).
        if (!pool.accepting) {
          session.end({ status: "cancelled", error: "the worker stopped accepting jobs before the application's requestFunc accepted" });
          await req.reject();
          return;
        }
        accepted.add(job.id);
        // Before the accept, as above; JobRequest.accept has already put agent-<job id> in place
        // of an empty identity.
        channel.expectLaunch(session, { identity: args.identity });
        await req.accept(args.name, args.identity, args.metadata, { ...args.attributes, ...versionAttributes });
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

  // The SDK reports `loadFunc(server)` every 2.5 s and marks the worker available again when it
  // is below the threshold: while the pool does not accept, report full, whatever the threshold
  // (Infinity outside production, the SDK's default with a Cloud worker token).
  const gated = new WeakSet<LoadFunc>();
  const gate = (inner: LoadFunc): LoadFunc => {
    const load: LoadFunc = async (server) => {
      attach(server);
      if (!pool.accepting) return Math.max(FULL_LOAD, serverOptions.loadThreshold);
      return inner(server);
    };
    gated.add(load);
    return load;
  };
  const defaultLoad = sdkDefaultLoad();
  // With a LiveKit Cloud worker token agents-js replaces any custom loadFunc with its default
  // (and warns). Hand it the default so it has nothing to replace; `attach` gates it afterwards.
  const cloud = Boolean(init.workerToken);
  if (cloud && init.loadFunc !== undefined && init.loadFunc !== defaultLoad) {
    pool.logger.warn({}, "a custom loadFunc is not used with a LiveKit Cloud worker token (as in @livekit/agents); the SDK's CPU load is reported");
  }
  const serverOptions = new ServerOptions({ ...init, requestFunc, loadFunc: cloud ? defaultLoad : gate(init.loadFunc ?? defaultLoad) });

  const onState = () => {
    if (pool.accepting) return;
    for (const server of servers) sendFull(proto, server);
  };
  const onSessionEnded = (info: SessionInfo, outcome: SessionOutcome) => {
    if (!accepted.delete(info.jobId)) return;
    const success = outcome.status === "success";
    for (const server of servers) sendJobStatus(proto, server, info.jobId, success, success ? "" : (outcome.error ?? outcome.status));
  };
  pool.on("state", onState);
  pool.on("membership", onState);
  pool.on("sessionEnded", onSessionEnded);

  function attach(server: AgentServer): void {
    if (servers.has(server)) return;
    servers.add(server);
    // The server keeps this very options object (worker.js `#opts`), so a loadFunc it swapped in
    // at construction (Cloud) is gated here, before its first load report.
    if (!gated.has(serverOptions.loadFunc)) serverOptions.loadFunc = gate(serverOptions.loadFunc);
    server.event.on("worker_registered", (workerId: string) => {
      pool.markReady({ workerId });
      // A "full" sent before the socket was up is lost: say it again on every registration.
      if (!pool.accepting) sendFull(proto, server);
    });
    const originalDrain = server.drain.bind(server);
    // Code that calls server.drain() itself goes through the pool drain, so the drain is audited,
    // rejections are recorded, and nothing is cut at LiveKit's drain timeout. The SDK's own
    // drain runs only once nothing is live: in 1.9 it SIGKILLs a job process still starting for
    // an accepted call.
    server.drain = async (timeout?: number) => {
      pool.beginDrain({ actor: "livekit:drain", reason: "AgentServer.drain()" });
      await pool.drained;
      await closingIdleJobProcesses(sdk, () => originalDrain(timeout));
    };
    // Once nothing is live and no job can be accepted, a job process with no job that is still
    // starting cannot take one any more: close it at once (agents-js 1.9 would wait
    // shutdownProcessTimeout for it, see closingIdleJobProcesses). A close while calls are live
    // is the SDK's own.
    const originalClose = server.close.bind(server);
    server.close = () => (!pool.accepting && pool.activeSessions === 0 ? closingIdleJobProcesses(sdk, originalClose) : originalClose());
    if (!pool.accepting) sendFull(proto, server);
  }

  return {
    pool,
    channel,
    options: serverOptions,
    livekitDeployment: deployment,
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

/** A TCP port free on `host` right now (the SDK's health server binds it moments later). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
