import type { EventEmitter } from "node:events";

/**
 * How a job ended, as seen from outside the workers.
 * - `completed`: with a caller, the agent's job was still running when the caller hung up;
 *   without one (legacy), the worker reported success or the agent deleted its room.
 * - `cut_short`: the job ended before its caller hung up (see `CutShortCause`). Only jobs with a caller.
 * - `failed`, `dropped`: legacy (no caller): JS_FAILED / agent left the room, and worker gone.
 * - `unplaced`: no worker was ever offered the job (none of its key, none with capacity, dispatcher closed).
 * - `abandoned`: offers were made and the job request gave up (every worker tried, a timeout, or a
 *   worker answered `terminate`). Only with `profile: "livekit"`; the legacy profile says `unplaced`.
 * - `terminated`: `terminate(jobId)` ended it.
 */
export type JobFate = "completed" | "cut_short" | "failed" | "dropped" | "unplaced" | "abandoned" | "terminated";

/**
 * Why a call was cut short, from what the dispatcher observed:
 * - `worker_gone`: the worker closed its socket, was lost (no re-registration within the grace
 *   period), or `markWorkerGone` was called;
 * - `job_process_killed`: the agent left the room without the job ending through the protocol
 *   (the presence probe saw its process die, or `agentLeftRoom()` reported it);
 * - `job_failed` / `job_succeeded_early`: the worker sent UpdateJobStatus JS_FAILED / JS_SUCCESS;
 * - `room_deleted`: the room was deleted (RoomService DeleteRoom, e.g. the agent hanging up itself);
 * - `agent_never_joined`: at hang-up the presence probe said the agent had not joined yet.
 */
export type CutShortCause = "worker_gone" | "job_process_killed" | "job_failed" | "job_succeeded_early" | "room_deleted" | "agent_never_joined";

/** LiveKit's view of a job (`JobState.status`), as the real server would record it. */
export type ServerJobStatus = "JS_PENDING" | "JS_RUNNING" | "JS_SUCCESS" | "JS_FAILED";

/**
 * What the dispatcher follows. `livekit`: LiveKit's server rules (deployment routing, weighted
 * random selection, retry only on not-available/closed, 10 s availability timeout, abandon when
 * all tried, a new worker id on reconnect). `legacy`: the dispatcher's earlier, kinder rules
 * (agent-name routing, least-jobs, move on after any failure, 5 s, same id on reconnect).
 */
export type DispatcherProfile = "livekit" | "legacy";

/** What a presence probe knows about a job's agent participant (a stand-in for the room's participant list). */
export type AgentPresence = "in_room" | "left" | "not_joined";

/** Where a job is in its life. `ended` jobs carry a `fate`. */
export type JobState = "pending" | "offering" | "running" | "ended";

export type WorkerStatusName = "available" | "full";

/** Minimal structured logger; pino, console-like adapters and the core logger all fit. */
export interface DispatcherLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export type PlacementStrategy = "least-jobs" | "round-robin";

/** How a worker is picked for each attempt. `weighted-by-load` is LiveKit's; the others are legacy. */
export type SelectionStrategy = "weighted-by-load" | PlacementStrategy;

export interface DispatcherOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  apiKey: string;
  apiSecret: string;
  /** Which rules to follow (see `DispatcherProfile`). Default `livekit`, LiveKit server's own; `legacy` keeps the earlier, kinder rules for old tests. */
  profile?: DispatcherProfile;
  /** Worker selection. Default: `weighted-by-load` with `profile: "livekit"`, else `strategy` or `least-jobs`. */
  selection?: SelectionStrategy;
  /** Seed for the selection's random source (reproducible choices). Ignored when `random` is given. Default: unseeded (Math.random). */
  seed?: number;
  /** Random source in [0, 1) for `weighted-by-load`. */
  random?: () => number;
  /** Offer a job only to workers whose deployment equals the dispatch's. Default: true with `profile: "livekit"`, false with `legacy`. */
  routeByDeployment?: boolean;
  /** How long a worker may take to answer an AvailabilityRequest. Default 10000 (`livekit`, AssignJobTimeout) or 5000 (`legacy`). With `livekit` a timeout abandons the job; with `legacy` it moves on. */
  availabilityTimeoutMs?: number;
  /** A connection that has not registered within this time is closed (worker.go RegisterTimeout). Default 10000. */
  registerTimeoutMs?: number;
  /** Tells whether a running job's agent is in its room (e.g. `markerDirPresence(dir)`); polled every `presencePollMs` and at each hang-up. */
  agentPresence?: (jobId: string) => AgentPresence | undefined;
  /** Default 250. */
  presencePollMs?: number;
  /** How long a worker whose socket dropped may take to re-register before its running jobs count as dropped. Default 5000. */
  reconnectGraceMs?: number;
  /** Legacy only: extra dispatch rounds for a job no worker took, each after `retryDelayMs`. Default 0. LiveKit's server has no such rounds: with `profile: "livekit"` a value > 0 is refused (re-dispatch instead; each abandonment is counted). */
  unplacedRetries?: number;
  /** Delay before each extra dispatch round. Default 1000. */
  retryDelayMs?: number;
  /** Deprecated alias of `selection` (legacy orders only). */
  strategy?: PlacementStrategy;
  /** Mint a room-join token for each assignment (what LiveKit does). Default true; false sends an empty token. */
  mintJobTokens?: boolean;
  logger?: DispatcherLogger;
  /** Unix seconds; defaults to the system clock. */
  clock?: () => number;
}

/** A snapshot of one registered worker (a copy: mutating it changes nothing). */
export interface WorkerView {
  /** Id the dispatcher gave the worker (`AW_…`). `legacy`: kept across reconnects; `livekit`: every registration gets a new one. */
  id: string;
  agentName: string;
  /** `RegisterWorkerRequest.namespace` (deprecated by LiveKit, still part of the routing key). */
  namespace: string;
  /** `RegisterWorkerRequest.type`, e.g. `JT_ROOM`. */
  jobType: string;
  /** `livekit` profile: the id of the worker this registration replaced (same path prefix and registration fields). */
  reconnectOf?: string;
  /** `RegisterWorkerRequest.version`: the @livekit/agents SDK version, not the deployment. */
  version: string;
  /** `RegisterWorkerRequest.deployment`: the agents SDK fills it from `LIVEKIT_AGENT_DEPLOYMENT`. */
  deployment: string;
  /** Path before `/agent` in the URL the worker connected to ("" for the root). */
  pathPrefix: string;
  status: WorkerStatusName;
  load: number;
  connected: boolean;
  /** True once the worker is gone for good (closed by itself, grace expired, or markWorkerGone). */
  gone: boolean;
  registeredAt: number;
  lastMessageAt: number;
  disconnectedAt?: number;
  reconnects: number;
  /** Ids of jobs assigned to this worker that have not ended. */
  runningJobs: string[];
}

/** `terminated`: the worker answered `AvailabilityResponse.terminate` (the job ends JS_SUCCESS without running). */
export type OfferAnswer = "accepted" | "unavailable" | "timeout" | "disconnected" | "terminated";

export interface OfferRecord {
  workerId: string;
  round: number;
  at: number;
  answer?: OfferAnswer;
}

/** Everything the dispatcher knows about one job (a copy). */
export interface JobRecord {
  id: string;
  roomName: string;
  roomSid: string;
  agentName: string;
  /** The dispatch's deployment (routing key; "" = an ordinary dispatch). */
  deployment: string;
  namespace: string;
  metadata: string;
  state: JobState;
  fate?: JobFate;
  /** Set when `fate` is `cut_short`. */
  cause?: CutShortCause;
  /**
   * Why the job ended: `caller_hung_up`, `room_deleted`, `job_status`, `agent_left_room`,
   * `worker_closed`, `worker_lost`, `worker_gone`, `terminated`; for jobs that never ran:
   * `no workers available`, `no workers with sufficient capacity` (the server's texts),
   * `all_workers_tried`, `availability_timeout`, `worker_terminated_job`,
   * `no_worker_available` (legacy), `dispatcher_closed`.
   */
  endReason?: string;
  /** Error text from `UpdateJobStatus.error` (or "agent worker left the room"). */
  error?: string;
  /** The job's status as LiveKit's server would record it. */
  serverStatus: ServerJobStatus;
  /** `livekit` profile: the job's worker reconnected and the server forgot the job (its agent may still be in the room). */
  serverForgot?: boolean;
  /** Worker (connection) now hosting the job's process: differs from `workerId` after a `livekit` reconnect. */
  hostWorkerId?: string;
  /** The call has a caller, who judges its fate (`hangUpAfterMs` given, or `caller: true` and `hangUp()`). */
  hasCaller: boolean;
  /** When set, the caller hangs up this long after the job was assigned. */
  hangUpAfterMs?: number;
  /** With `talkMs`: the caller talks this long once the agent joined. */
  talkMs?: number;
  joinTimeoutMs?: number;
  /** When the presence probe first saw the agent in the room (Unix seconds; `talkMs` calls). */
  agentJoinedAt?: number;
  /** When the caller hung up (Unix seconds), if they did before the job ended. */
  hungUpAt?: number;
  workerId?: string;
  workerVersion?: string;
  workerDeployment?: string;
  participantIdentity?: string;
  /** `AvailabilityResponse.participantAttributes` of the accept: the agent participant's attributes (e.g. `openrtc.deployment_version`). */
  participantAttributes?: Record<string, string>;
  createdAt: number;
  assignedAt?: number;
  endedAt?: number;
  /** Dispatch rounds used (1 + retries). */
  rounds: number;
  offers: OfferRecord[];
  /** Signals that arrived after the fate was final (e.g. an orphaned job deleting its room). */
  lateSignals: string[];
}

export interface DispatchRequest {
  /** Job id; default `AJ_<n>`. Must be unique. */
  id?: string;
  /** Default `room-<job id>`. */
  roomName?: string;
  /** Passed to the agent as `ctx.job.metadata`. */
  metadata?: string;
  /** Only workers registered with exactly this agent name are offered the job (LiveKit explicit dispatch). Default "". */
  agentName?: string;
  /** Routing key (`CreateAgentDispatchRequest.deployment`). Default "" (an ordinary dispatch). Used when `routeByDeployment`. */
  deployment?: string;
  /** Deprecated LiveKit namespace, part of the routing key. Default "". */
  namespace?: string;
  /** A caller who hangs up this many ms after the job is assigned; the caller then decides the fate (see `JobFate`). */
  hangUpAfterMs?: number;
  /**
   * A caller who waits for the agent to join (the `agentPresence` probe says `in_room`), talks
   * this long, then hangs up: a call's length counted from its answer, as a person would. If the
   * agent has not joined `joinTimeoutMs` after assignment, the caller hangs up (`agent_never_joined`).
   */
  talkMs?: number;
  /** With `talkMs`: how long the caller waits for the agent. Default 30000. */
  joinTimeoutMs?: number;
  /** A caller who hangs up when `hangUp(jobId)` is called. Default: true when `hangUpAfterMs` is given. */
  caller?: boolean;
}

export interface JobHandle {
  id: string;
  /** Resolves with the record once a worker accepted the job or it was reported unplaced. Never rejects. */
  placed: Promise<JobRecord>;
  /** Resolves with the record once the job has a fate. Never rejects. */
  ended: Promise<JobRecord>;
  record(): JobRecord;
}

export type FateCounts = Record<JobFate, number>;
export type CauseCounts = Record<CutShortCause, number>;

export interface DispatchSummary {
  total: number;
  /** Jobs not ended yet: pending, offering or running. */
  inFlight: number;
  byFate: FateCounts;
  /** `cut_short` jobs by cause. */
  cutShortByCause: CauseCounts;
  /** Jobs that never ran (`unplaced` and `abandoned`) by `endReason`. */
  notRunByReason: Record<string, number>;
  /** Fates keyed by the deployment of the worker that ran the job ("" when none registered; unplaced jobs have no worker and are not counted here). */
  byDeployment: Record<string, FateCounts>;
  /** Fates keyed by worker id. */
  byWorker: Record<string, FateCounts>;
}

export interface RegistrationRejection {
  at: number;
  remoteAddress: string;
  /** The server's error text, e.g. "deployment contains reserved character '_'". */
  reason: string;
  agentName: string;
  deployment: string;
  version: string;
}

export interface AuthRejection {
  at: number;
  remoteAddress: string;
  reason: string;
}

/** Event name → listener arguments. */
export type DispatcherEvents = {
  worker_registered: [worker: WorkerView];
  worker_reconnected: [worker: WorkerView];
  worker_status: [worker: WorkerView];
  worker_disconnected: [worker: WorkerView, info: { code: number; awaitingReconnect: boolean }];
  worker_gone: [worker: WorkerView, reason: string];
  auth_rejected: [rejection: AuthRejection];
  /** A RegisterWorkerRequest failed validation; the connection was closed without a response. */
  registration_rejected: [rejection: RegistrationRejection];
  protocol_error: [info: { workerId?: string; message: string }];
  job_offered: [job: JobRecord, workerId: string];
  job_rejected_by_worker: [job: JobRecord, workerId: string, answer: Exclude<OfferAnswer, "accepted">];
  job_assigned: [job: JobRecord];
  job_retry: [job: JobRecord, round: number];
  job_unplaced: [job: JobRecord];
  /** The job request gave up after offers (also emits `job_ended`). */
  job_abandoned: [job: JobRecord];
  /** The caller hung up; `job` carries the fate it decided. */
  caller_hung_up: [job: JobRecord];
  job_ended: [job: JobRecord];
};

export type DispatcherEventName = keyof DispatcherEvents;

export interface TypedEmitter<E extends Record<string, unknown[]>> extends EventEmitter {
  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  emit<K extends keyof E & string>(event: K, ...args: E[K]): boolean;
}

export interface Dispatcher {
  /** `ws://host:port` — give it to workers as `wsURL` (they append `/agent`). */
  url: string;
  /** `http://host:port` — RoomService (Twirp) base URL. */
  httpUrl: string;
  port: number;
  /** The rules this dispatcher follows. */
  profile: DispatcherProfile;
  events: TypedEmitter<DispatcherEvents>;
  workers(): WorkerView[];
  worker(id: string): WorkerView | undefined;
  jobs(): JobRecord[];
  job(id: string): JobRecord | undefined;
  dispatch(request?: DispatchRequest): JobHandle;
  /** Send JobTermination for a running job; its fate becomes `terminated`. */
  terminate(jobId: string): void;
  /** Close a room as if RoomService.DeleteRoom was called: its running jobs complete. Returns the ended job ids. */
  deleteRoom(roomName: string): string[];
  /** Tell the dispatcher a worker's process is gone: its running jobs end now (`cut_short`/worker_gone, or `dropped` without a caller). */
  markWorkerGone(workerId: string): void;
  /** The job's caller hangs up now (the job must have a caller): `completed` if its agent's job still runs; the room then closes (JobTermination). */
  hangUp(jobId: string): void;
  /** Tell the dispatcher a running job's agent left its room (e.g. its job process died): JS_FAILED "agent worker left the room". */
  agentLeftRoom(jobId: string): void;
  registrationRejections(): RegistrationRejection[];
  /** Drop a worker's socket without ending it (a network blip); a real AgentServer reconnects. */
  dropConnection(workerId: string): void;
  summary(): DispatchSummary;
  authRejections(): AuthRejection[];
  /** Resolve when `count` connected workers match (default: available), reject after `timeoutMs`. */
  waitForWorkers(count: number, opts?: { timeoutMs?: number; filter?: (w: WorkerView) => boolean }): Promise<WorkerView[]>;
  close(): Promise<void>;
}
