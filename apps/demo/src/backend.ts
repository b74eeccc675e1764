// Where calls come from: the embedded LiveKit-protocol dispatcher (default; it also judges every
// call's fate from outside the workers), or a real LiveKit server when LIVEKIT_URL,
// LIVEKIT_API_KEY and LIVEKIT_API_SECRET are set.
import { randomBytes } from "node:crypto";
import { startDispatcher, type Dispatcher, type JobRecord } from "@openrtc/livekit-dispatcher";
import { AgentDispatchClient, RoomServiceClient } from "livekit-server-sdk";
import { callMetadata, type PlannedCall } from "./calls.ts";

/** Fates of the run's calls. `observed` says whether they were judged from outside the workers. */
export interface CallTally {
  observed: boolean;
  started: number;
  completed: number;
  failed: number;
  dropped: number;
  terminated: number;
  unplaced: number;
  inFlight: number;
  /** Calls by the deployment version of the worker that took them. */
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
  /** Starts one call; resolves once it was handed to LiveKit (not when it ends). */
  dispatch(call: PlannedCall): Promise<void>;
  /** Resolves once every dispatched call was taken by a worker or reported unplaced (embedded), or at once (LiveKit). */
  placed(): Promise<void>;
  /** Resolves once every dispatched call ended (embedded) or at once (LiveKit: not observable here). */
  settled(): Promise<void>;
  tally(): CallTally;
  /** A worker was killed (interrupted run): its running calls count as dropped now. */
  workerKilled?(workerId: string): void;
  close(): Promise<void>;
}

/** The embedded dispatcher: real agent-worker protocol on 127.0.0.1, fates judged from outside. */
export class EmbeddedBackend implements CallBackend {
  readonly kind = "embedded";
  readonly agentName = "";
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly dispatcher: Dispatcher;
  readonly #ended: Promise<JobRecord>[] = [];
  readonly #placed: Promise<JobRecord>[] = [];

  private constructor(dispatcher: Dispatcher, apiKey: string, apiSecret: string) {
    this.dispatcher = dispatcher;
    this.apiKey = apiKey;
    this.apiSecret = apiSecret;
  }

  static async start(): Promise<EmbeddedBackend> {
    // Fresh credentials per run: nothing to configure, nothing to leak.
    const apiKey = `demo-${randomBytes(4).toString("hex")}`;
    const apiSecret = randomBytes(32).toString("hex");
    // A call nobody can take right now (e.g. between a manifest switch and the new version's
    // registration) is offered again a few times before it counts as unplaced.
    const dispatcher = await startDispatcher({ apiKey, apiSecret, unplacedRetries: 10, retryDelayMs: 500, mintJobTokens: false });
    return new EmbeddedBackend(dispatcher, apiKey, apiSecret);
  }

  get url(): string {
    return this.dispatcher.url;
  }

  async dispatch(call: PlannedCall): Promise<void> {
    const handle = this.dispatcher.dispatch({ id: `call-${String(call.index).padStart(3, "0")}`, metadata: callMetadata(call) });
    this.#ended.push(handle.ended);
    this.#placed.push(handle.placed);
  }

  async placed(): Promise<void> {
    await Promise.all(this.#placed);
  }

  async settled(): Promise<void> {
    await Promise.all(this.#ended);
  }

  tally(): CallTally {
    const jobs = this.dispatcher.jobs();
    const byVersion: Record<string, number> = {};
    for (const job of jobs) {
      if (job.workerDeployment === undefined) continue;
      byVersion[job.workerDeployment] = (byVersion[job.workerDeployment] ?? 0) + 1;
    }
    const { byFate, inFlight } = this.dispatcher.summary();
    return {
      observed: true,
      started: jobs.length,
      completed: byFate.completed,
      failed: byFate.failed,
      dropped: byFate.dropped,
      terminated: byFate.terminated,
      unplaced: byFate.unplaced,
      inFlight,
      byVersion,
    };
  }

  workerKilled(workerId: string): void {
    if (this.dispatcher.worker(workerId)?.gone === false) this.dispatcher.markWorkerGone(workerId);
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}

/**
 * A real LiveKit server. Each call is a room plus an explicit agent dispatch carrying the call's
 * metadata; the agent hangs up by deleting the room. LiveKit does not tell an outside observer
 * how each job ended, so fates here come from the workers themselves (see `tally`).
 */
export class LiveKitBackend implements CallBackend {
  readonly kind = "livekit";
  readonly agentName = "openrtc-demo";
  readonly url: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly #rooms: RoomServiceClient;
  readonly #dispatches: AgentDispatchClient;
  readonly #runId = randomBytes(3).toString("hex");
  #started = 0;

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
    this.#started++;
  }

  async placed(): Promise<void> {}

  async settled(): Promise<void> {}

  tally(): CallTally {
    return { observed: false, started: this.#started, completed: 0, failed: 0, dropped: 0, terminated: 0, unplaced: 0, inFlight: 0, byVersion: {} };
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
