// Where calls come from: the embedded LiveKit-protocol dispatcher (default; it also judges every
// call's fate from outside the workers), or a real LiveKit server when LIVEKIT_URL,
// LIVEKIT_API_KEY and LIVEKIT_API_SECRET are set.
import { randomBytes } from "node:crypto";
import { markerDirPresence, startDispatcher, type Dispatcher, type DispatchSummary, type JobRecord } from "@openrtc/livekit-dispatcher";
import { DEPLOYMENT_VERSION_ATTRIBUTE } from "@openrtc/core/livekit";
import { AgentDispatchClient, RoomServiceClient } from "livekit-server-sdk";
import { callMetadata, type PlannedCall } from "./calls.ts";

/**
 * Fates of the run's calls, judged by their callers: `completed` means the agent's job was still
 * running when its caller hung up; a job that ended first is `cut_short` (with its cause),
 * whatever the worker reported. `observed` says whether they were judged from outside the workers.
 */
export interface CallTally {
  observed: boolean;
  started: number;
  completed: number;
  cutShort: number;
  cutShortByCause: Record<string, number>;
  /** No worker was offered the call (none registered, none with capacity). */
  unplaced: number;
  /** Offers were made and LiveKit's job request gave up (every worker tried, a timeout). */
  abandoned: number;
  /** Calls that never ran, by the server's reason. */
  notRunByReason: Record<string, number>;
  inFlight: number;
  /** Calls by the version that answered them (the agent participant's `openrtc.deployment_version`). */
  byVersion: Record<string, number>;
}

export interface CallBackend {
  readonly kind: "embedded" | "livekit";
  /** What workers connect to. */
  readonly url: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  /** LIVEKIT_AGENT_NAME for workers ("" = the embedded dispatcher's default). */
  readonly agentName: string;
  /** Environment the workers need beyond the credentials (e.g. the agent's marker directory). */
  readonly workerEnv: Record<string, string>;
  /** Starts one call; resolves once it was handed to LiveKit (not when it ends). */
  dispatch(call: PlannedCall): Promise<void>;
  /** Resolves once every dispatched call was taken by a worker or given up on. */
  placed(): Promise<void>;
  /** Calls dispatched and not yet taken by a worker or given up on. */
  pending(): number;
  /** Resolves once every dispatched call has its caller's verdict. */
  settled(): Promise<void>;
  tally(): CallTally;
  /** A worker was killed (interrupted run): its running calls are cut short now. */
  workerKilled?(workerId: string): void;
  close(): Promise<void>;
}

/** How long a caller waits for the agent to answer before hanging up (then: cut short, agent never joined). Patient: on a loaded 2-core box a job process can take tens of seconds to start. */
export const CALLER_PATIENCE_MS = 60_000;

/**
 * The embedded dispatcher, following LiveKit's server rules (deployment routing, weighted
 * selection by load, no retries beyond the server's, 10 s availability timeout). Each call has a
 * caller who waits for the agent to answer, talks for the call's duration, then hangs up, and
 * judges the call's fate from outside the workers. No retry loop of our own: a call LiveKit would
 * give up on counts as abandoned.
 */
export class EmbeddedBackend implements CallBackend {
  readonly kind = "embedded";
  readonly agentName = "";
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly dispatcher: Dispatcher;
  readonly workerEnv: Record<string, string>;
  readonly #ended: Promise<JobRecord>[] = [];
  readonly #placed: Promise<JobRecord>[] = [];
  #pending = 0;

  private constructor(dispatcher: Dispatcher, apiKey: string, apiSecret: string, markerDir: string) {
    this.dispatcher = dispatcher;
    this.apiKey = apiKey;
    this.apiSecret = apiSecret;
    this.workerEnv = { HOLD_CALL_MARKER_DIR: markerDir };
  }

  /** `markerDir`: where the agent notes its job process (the stand-in for "the agent is in the room"). */
  static async start(options: { markerDir: string; seed: number; availabilityTimeoutMs?: number }): Promise<EmbeddedBackend> {
    // Fresh credentials per run: nothing to configure, nothing to leak.
    const apiKey = `demo-${randomBytes(4).toString("hex")}`;
    const apiSecret = randomBytes(32).toString("hex");
    const dispatcher = await startDispatcher({
      apiKey,
      apiSecret,
      profile: "livekit",
      seed: options.seed,
      agentPresence: markerDirPresence(options.markerDir),
      mintJobTokens: false,
      ...(options.availabilityTimeoutMs === undefined ? {} : { availabilityTimeoutMs: options.availabilityTimeoutMs }),
    });
    return new EmbeddedBackend(dispatcher, apiKey, apiSecret, options.markerDir);
  }

  get url(): string {
    return this.dispatcher.url;
  }

  async dispatch(call: PlannedCall): Promise<void> {
    const handle = this.dispatcher.dispatch({ id: callId(call), metadata: callMetadata(call), talkMs: call.durationMs, joinTimeoutMs: CALLER_PATIENCE_MS });
    this.#ended.push(handle.ended);
    this.#placed.push(handle.placed);
    this.#pending++;
    void handle.placed.then(() => this.#pending--);
  }

  pending(): number {
    return this.#pending;
  }

  async placed(): Promise<void> {
    await Promise.all(this.#placed);
  }

  async settled(): Promise<void> {
    await Promise.all(this.#ended);
  }

  tally(): CallTally {
    return tallyJobs(this.dispatcher.jobs(), this.dispatcher.summary());
  }

  workerKilled(workerId: string): void {
    if (this.dispatcher.worker(workerId)?.gone === false) this.dispatcher.markWorkerGone(workerId);
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}

/** The call's verdicts from the dispatcher's records (the outside view). */
export function tallyJobs(jobs: readonly JobRecord[], summary: DispatchSummary): CallTally {
  const byVersion: Record<string, number> = {};
  for (const job of jobs) {
    const version = job.participantAttributes?.[DEPLOYMENT_VERSION_ATTRIBUTE];
    if (version === undefined) continue;
    byVersion[version] = (byVersion[version] ?? 0) + 1;
  }
  const cutShortByCause = Object.fromEntries(Object.entries(summary.cutShortByCause).filter(([, n]) => n > 0));
  return {
    observed: true,
    started: jobs.length,
    completed: summary.byFate.completed,
    cutShort: summary.byFate.cut_short,
    cutShortByCause,
    unplaced: summary.byFate.unplaced,
    abandoned: summary.byFate.abandoned,
    notRunByReason: summary.notRunByReason,
    inFlight: summary.inFlight,
    byVersion,
  };
}

export function callId(call: PlannedCall): string {
  return `call-${String(call.index).padStart(4, "0")}`;
}

/**
 * A real LiveKit server. Each call is a room plus an explicit agent dispatch carrying the call's
 * metadata, and a caller judged from outside with the server API (livekit-server-sdk): the caller
 * waits for the agent participant to join, talks for the call's duration, then checks the agent
 * is still in the room (completed) or not (cut short) and hangs up by deleting the room.
 * Not exercised by the test suite: no LiveKit server runs on these machines.
 */
export class LiveKitBackend implements CallBackend {
  readonly kind = "livekit";
  readonly agentName = "openrtc-demo";
  readonly workerEnv: Record<string, string> = { OPENRTC_DEMO_CONNECT: "1" };
  readonly url: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly #rooms: RoomServiceClient;
  readonly #dispatches: AgentDispatchClient;
  readonly #runId = randomBytes(3).toString("hex");
  readonly #verdicts: Promise<void>[] = [];
  readonly #tally: CallTally = { observed: true, started: 0, completed: 0, cutShort: 0, cutShortByCause: {}, unplaced: 0, abandoned: 0, notRunByReason: {}, inFlight: 0, byVersion: {} };

  constructor(url: string, apiKey: string, apiSecret: string) {
    this.url = url;
    this.apiKey = apiKey;
    this.apiSecret = apiSecret;
    const http = url.replace(/^ws(s?):\/\//, "http$1://");
    this.#rooms = new RoomServiceClient(http, apiKey, apiSecret);
    this.#dispatches = new AgentDispatchClient(http, apiKey, apiSecret);
  }

  async dispatch(call: PlannedCall): Promise<void> {
    const room = `openrtc-demo-${this.#runId}-${call.index}`;
    await this.#rooms.createRoom({ name: room, emptyTimeout: 60 });
    await this.#dispatches.createDispatch(room, this.agentName, { metadata: callMetadata(call) });
    this.#tally.started++;
    this.#tally.inFlight++;
    this.#verdicts.push(this.#caller(room, call).finally(() => this.#tally.inFlight--));
  }

  async #caller(room: string, call: PlannedCall): Promise<void> {
    const t = this.#tally;
    const agent = await this.#waitForAgent(room, CALLER_PATIENCE_MS);
    if (agent === undefined) {
      t.cutShort++;
      t.cutShortByCause.agent_never_joined = (t.cutShortByCause.agent_never_joined ?? 0) + 1;
    } else {
      const version = agent.attributes[DEPLOYMENT_VERSION_ATTRIBUTE];
      if (version !== undefined) t.byVersion[version] = (t.byVersion[version] ?? 0) + 1;
      await new Promise((r) => setTimeout(r, call.durationMs));
      const still = (await this.#rooms.listParticipants(room)).some((p) => p.identity === agent.identity);
      if (still) t.completed++;
      else {
        t.cutShort++;
        t.cutShortByCause.agent_left_room = (t.cutShortByCause.agent_left_room ?? 0) + 1;
      }
    }
    await this.#rooms.deleteRoom(room).catch(() => {});
  }

  async #waitForAgent(room: string, patienceMs: number): Promise<{ identity: string; attributes: Record<string, string> } | undefined> {
    const deadline = Date.now() + patienceMs;
    while (Date.now() < deadline) {
      // agents-js stamps its participant with lk.agent.name (ATTRIBUTE_AGENT_NAME), as the Python SDK does.
      const agent = (await this.#rooms.listParticipants(room)).find((p) => p.attributes["lk.agent.name"] !== undefined);
      if (agent !== undefined) return { identity: agent.identity, attributes: agent.attributes };
      await new Promise((r) => setTimeout(r, 250));
    }
    return undefined;
  }

  async placed(): Promise<void> {}

  pending(): number {
    return 0;
  }

  async settled(): Promise<void> {
    await Promise.all(this.#verdicts);
  }

  tally(): CallTally {
    return { ...this.#tally, cutShortByCause: { ...this.#tally.cutShortByCause }, byVersion: { ...this.#tally.byVersion } };
  }

  async close(): Promise<void> {}
}

/** LiveKit credentials from the environment: all three, none (embedded), or an error naming what is missing. */
export function liveKitFromEnv(env: NodeJS.ProcessEnv): { url: string; apiKey: string; apiSecret: string } | undefined {
  const names = ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] as const;
  const set = names.filter((n) => (env[n] ?? "") !== "");
  if (set.length === 0) return undefined;
  if (set.length < names.length) {
    const missing = names.filter((n) => !set.includes(n));
    throw new Error(`${set.join(", ")} set but ${missing.join(", ")} not: set all three to use a LiveKit server, or none to use the embedded dispatcher`);
  }
  return { url: env.LIVEKIT_URL!, apiKey: env.LIVEKIT_API_KEY!, apiSecret: env.LIVEKIT_API_SECRET! };
}
