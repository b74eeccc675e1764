import type { EventEmitter } from "node:events";

/** How a job ended, as seen from outside the workers. */
export type JobFate = "completed" | "failed" | "dropped" | "unplaced" | "terminated";

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

export interface DispatcherOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  apiKey: string;
  apiSecret: string;
  /** How long a worker may take to answer an AvailabilityRequest before the job moves on. Default 5000. */
  availabilityTimeoutMs?: number;
  /** How long a worker whose socket dropped may take to re-register before its running jobs count as dropped. Default 5000. */
  reconnectGraceMs?: number;
  /** Extra dispatch rounds for a job no worker took, each after `retryDelayMs`. Default 0 (report unplaced at once). */
  unplacedRetries?: number;
  /** Delay before each extra dispatch round. Default 1000. */
  retryDelayMs?: number;
  /** Worker order for offers. Default `least-jobs` (fewest running jobs, ties by registration order). */
  strategy?: PlacementStrategy;
  /** Mint a room-join token for each assignment (what LiveKit does). Default true; false sends an empty token. */
  mintJobTokens?: boolean;
  logger?: DispatcherLogger;
  /** Unix seconds; defaults to the system clock. */
  clock?: () => number;
}

/** A snapshot of one registered worker (a copy: mutating it changes nothing). */
export interface WorkerView {
  /** Id the dispatcher gave the worker (`AW_…`); kept across reconnects. */
  id: string;
  agentName: string;
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

export type OfferAnswer = "accepted" | "unavailable" | "timeout" | "disconnected";

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
  metadata: string;
  state: JobState;
  fate?: JobFate;
  /** Why the job ended: `room_deleted`, `job_status`, `worker_closed`, `worker_lost`, `worker_gone`, `terminated`, `no_worker_available`, `dispatcher_closed`. */
  endReason?: string;
  /** Error text from `UpdateJobStatus.error`, when the worker sent one. */
  error?: string;
  workerId?: string;
  workerVersion?: string;
  workerDeployment?: string;
  participantIdentity?: string;
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

export interface DispatchSummary {
  total: number;
  /** Jobs not ended yet: pending, offering or running. */
  inFlight: number;
  byFate: FateCounts;
  /** Fates keyed by the deployment of the worker that ran the job ("" when none registered; unplaced jobs have no worker and are not counted here). */
  byDeployment: Record<string, FateCounts>;
  /** Fates keyed by worker id. */
  byWorker: Record<string, FateCounts>;
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
  protocol_error: [info: { workerId?: string; message: string }];
  job_offered: [job: JobRecord, workerId: string];
  job_rejected_by_worker: [job: JobRecord, workerId: string, answer: Exclude<OfferAnswer, "accepted">];
  job_assigned: [job: JobRecord];
  job_retry: [job: JobRecord, round: number];
  job_unplaced: [job: JobRecord];
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
  /** Tell the dispatcher a worker's process is gone: its running jobs become `dropped` now. */
  markWorkerGone(workerId: string): void;
  /** Drop a worker's socket without ending it (a network blip); a real AgentServer reconnects. */
  dropConnection(workerId: string): void;
  summary(): DispatchSummary;
  authRejections(): AuthRejection[];
  /** Resolve when `count` connected workers match (default: available), reject after `timeoutMs`. */
  waitForWorkers(count: number, opts?: { timeoutMs?: number; filter?: (w: WorkerView) => boolean }): Promise<WorkerView[]>;
  close(): Promise<void>;
}
