import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  AvailabilityRequest,
  Job,
  JobAssignment,
  JobStatus,
  JobTermination,
  JobType,
  RegisterWorkerResponse,
  Room,
  ServerInfo,
  ServerInfo_Edition,
  ServerMessage,
  WorkerMessage,
  WorkerPong,
  WorkerStatus,
  type AvailabilityResponse,
  type RegisterWorkerRequest,
  type UpdateJobStatus,
  type UpdateWorkerStatus,
} from "@livekit/protocol";
import { AccessToken, TokenVerifier } from "livekit-server-sdk";
import { WebSocket, WebSocketServer, type RawData } from "ws";
import { verifyBearer } from "./auth.ts";
import { judge, serverJobStatus, type EndSignal } from "./call-fate.ts";
import { copyRecord, JobLedger } from "./job-ledger.ts";
import { placementOrder } from "./placement.ts";
import { seededRandom } from "./random.ts";
import { jobTypeName, validateRegistration, type WorkerKey } from "./registration.ts";
import { selectWorkerWeightedByLoad, type Selection } from "./selection.ts";
import { WorkerRegistry } from "./worker-registry.ts";
import type {
  AgentPresence,
  AuthRejection,
  DispatcherProfile,
  RegistrationRejection,
  SelectionStrategy,
  DispatchRequest,
  Dispatcher,
  DispatcherEvents,
  DispatcherLogger,
  DispatcherOptions,
  JobHandle,
  JobRecord,
  OfferAnswer,
  TypedEmitter,
  WorkerView,
} from "./types.ts";

/** How long a caller waits for the agent to join before hanging up (`talkMs` calls). */
const DEFAULT_JOIN_TIMEOUT_MS = 30_000;
const SILENT: DispatcherLogger = { debug() {}, info() {}, warn() {}, error() {} };
const DELETE_ROOM_PATH = "/twirp/livekit.RoomService/DeleteRoom";
const MAX_BODY_BYTES = 64 * 1024;
/** Close codes a worker sends when it shuts its own socket (AgentServer.close() sends no code → 1005). */
const CLEAN_CLOSE_CODES = new Set([1000, 1005]);

type OfferOutcome = { answer: "accepted"; response: AvailabilityResponse } | { answer: Exclude<OfferAnswer, "accepted"> };

const SELECTIONS: readonly SelectionStrategy[] = ["weighted-by-load", "least-jobs", "round-robin"];

interface WorkerState {
  id: string;
  seq: number;
  agentName: string;
  namespace: string;
  jobType: JobType;
  version: string;
  deployment: string;
  reconnectOf: string | undefined;
  pathPrefix: string;
  status: "available" | "full";
  load: number;
  socket: WebSocket | undefined;
  gone: boolean;
  registeredAt: number;
  lastMessageAt: number;
  disconnectedAt: number | undefined;
  reconnects: number;
  graceTimer: NodeJS.Timeout | undefined;
  /** Offers awaiting an AvailabilityResponse, by job id. */
  offers: Map<string, (outcome: OfferOutcome) => void>;
  /** Running jobs whose process this worker hosts (after a `livekit` reconnect, also the ones the server forgot). */
  jobs: Set<string>;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function positiveMs(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) {
    throw new TypeError(`startDispatcher: ${name} must be a finite number of milliseconds >= 0, got ${String(value)}`);
  }
  return value;
}

function view(w: WorkerState): WorkerView {
  const v: WorkerView = {
    id: w.id,
    agentName: w.agentName,
    namespace: w.namespace,
    jobType: jobTypeName(w.jobType),
    version: w.version,
    deployment: w.deployment,
    pathPrefix: w.pathPrefix,
    status: w.status,
    load: w.load,
    connected: w.socket !== undefined,
    gone: w.gone,
    registeredAt: w.registeredAt,
    lastMessageAt: w.lastMessageAt,
    reconnects: w.reconnects,
    runningJobs: [...w.jobs],
  };
  if (w.disconnectedAt !== undefined) v.disconnectedAt = w.disconnectedAt;
  if (w.reconnectOf !== undefined) v.reconnectOf = w.reconnectOf;
  return v;
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

/**
 * Starts a local stand-in for LiveKit's agent dispatcher on `host:port`: real AgentServer
 * workers connect to `<url>/agent`, register, and are offered jobs; each job's fate is
 * recorded from outside the workers. See README.md.
 */
export async function startDispatcher(options: DispatcherOptions): Promise<Dispatcher> {
  if (!options || typeof options.apiKey !== "string" || options.apiKey === "") {
    throw new TypeError("startDispatcher: apiKey is required (the key workers sign their tokens with)");
  }
  if (typeof options.apiSecret !== "string" || options.apiSecret === "") {
    throw new TypeError("startDispatcher: apiSecret is required (the secret workers sign their tokens with)");
  }
  const profile: DispatcherProfile = options.profile ?? "livekit";
  if (profile !== "livekit" && profile !== "legacy") {
    throw new TypeError(`startDispatcher: profile must be "livekit" or "legacy", got ${JSON.stringify(profile)}`);
  }
  const livekit = profile === "livekit";
  if (options.strategy !== undefined && options.strategy !== "least-jobs" && options.strategy !== "round-robin") {
    throw new TypeError(`startDispatcher: strategy must be "least-jobs" or "round-robin", got ${JSON.stringify(options.strategy)}`);
  }
  if (options.strategy !== undefined && options.selection !== undefined && options.strategy !== options.selection) {
    throw new TypeError(`startDispatcher: strategy (deprecated) and selection disagree (${options.strategy} vs ${options.selection}); pass only selection`);
  }
  const selection: SelectionStrategy = options.selection ?? options.strategy ?? (livekit ? "weighted-by-load" : "least-jobs");
  if (!SELECTIONS.includes(selection)) {
    throw new TypeError(`startDispatcher: selection must be one of ${SELECTIONS.join(", ")}, got ${JSON.stringify(selection)}`);
  }
  if (options.random !== undefined && typeof options.random !== "function") {
    throw new TypeError("startDispatcher: random must be a function returning a number in [0, 1)");
  }
  const random = options.random ?? (options.seed !== undefined ? seededRandom(options.seed) : Math.random);
  const routeByDeployment = options.routeByDeployment ?? livekit;
  const retries = options.unplacedRetries ?? 0;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError(`startDispatcher: unplacedRetries must be an integer >= 0, got ${String(retries)}`);
  }
  if (livekit && retries > 0) {
    throw new TypeError(
      "startDispatcher: unplacedRetries is not something LiveKit's server does (agentservice.go JobRequest gives up once every worker was tried); with profile \"livekit\" dispatch again yourself, so each abandonment is counted",
    );
  }
  const availabilityTimeoutMs = positiveMs("availabilityTimeoutMs", options.availabilityTimeoutMs, livekit ? 10_000 : 5000);
  const registerTimeoutMs = positiveMs("registerTimeoutMs", options.registerTimeoutMs, 10_000);
  const presencePollMs = positiveMs("presencePollMs", options.presencePollMs, 250);
  if (options.agentPresence !== undefined && typeof options.agentPresence !== "function") {
    throw new TypeError("startDispatcher: agentPresence must be a function (jobId) => \"in_room\" | \"left\" | \"not_joined\" | undefined");
  }
  const probe = options.agentPresence;
  const reconnectGraceMs = positiveMs("reconnectGraceMs", options.reconnectGraceMs, 5000);
  const retryDelayMs = positiveMs("retryDelayMs", options.retryDelayMs, 1000);
  const host = options.host ?? "127.0.0.1";
  const { apiKey, apiSecret } = options;
  const mintJobTokens = options.mintJobTokens ?? true;
  const log = options.logger ?? SILENT;
  const now = options.clock ?? (() => Date.now() / 1000);

  const verifier = new TokenVerifier(apiKey, apiSecret);
  const events = new EventEmitter() as TypedEmitter<DispatcherEvents>;
  const ledger = new JobLedger();
  const workers = new WorkerRegistry<WorkerState>();
  const waiters = new Map<string, { placed: Deferred<JobRecord>; ended: Deferred<JobRecord> }>();
  const rejections: AuthRejection[] = [];
  const registrationRejections: RegistrationRejection[] = [];
  const hangUps = new Map<string, NodeJS.Timeout>();
  /** Jobs whose presence probe said `left` once; a second poll ends them (lets a worker's own report win a race). */
  const leftOnce = new Set<string>();
  const sleepers = new Set<{ timer: NodeJS.Timeout; wake(): void }>();
  let workerSeq = 0;
  let jobSeq = 0;
  let roomSeq = 0;
  let rrCursor = 0;
  let closing = false;

  // A throwing listener must not corrupt the dispatcher's state mid-update.
  const emit = <K extends keyof DispatcherEvents & string>(event: K, ...args: DispatcherEvents[K]): void => {
    try {
      events.emit(event, ...args);
    } catch (e) {
      log.error("dispatcher event listener threw", { event, error: String(e) });
    }
  };

  const send = (w: WorkerState, msg: ServerMessage): boolean => {
    const ws = w.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(msg.toBinary());
    return true;
  };

  /**
   * Terminations for jobs whose room closed while their worker's socket was down, by worker id.
   * On LiveKit the agent learns its room closed over media, whatever its worker socket does; here
   * the termination stands in for that, so it is delivered once the worker registers again.
   */
  const undelivered = new Map<string, Set<string>>();

  const sendTermination = (host: WorkerState, jobId: string): boolean =>
    send(host, new ServerMessage({ message: { case: "termination", value: new JobTermination({ jobId }) } }));

  /** The job's "room" closes for its agent: a JobTermination to the worker hosting its process. */
  const closeRoomFor = (job: JobRecord): void => {
    const host = job.hostWorkerId !== undefined ? workers.get(job.hostWorkerId) : undefined;
    if (host !== undefined && sendTermination(host, job.id)) return;
    if (host !== undefined && !host.gone) {
      const pending = undelivered.get(host.id) ?? new Set<string>();
      pending.add(job.id);
      undelivered.set(host.id, pending);
    }
    log.warn("termination not delivered yet: worker not connected", { jobId: job.id, workerId: job.hostWorkerId });
  };

  /**
   * Jobs whose room closed while their agent may still be (or not yet be) in it, with when the
   * room last closed on it. agents-js 1.9 ignores a JobTermination for a job whose process it is
   * still starting (its bookkeeping can lag the entry by a second under load), so the agent may
   * stay or join late; on LiveKit no participant stays in a deleted room, so while the probe
   * sees it in the room the closing is repeated, until it leaves.
   */
  const closedRooms = new Map<string, number>();
  const REPEAT_CLOSE_MS = 2000;

  const settle = (job: JobRecord, snapshot: JobRecord): void => {
    if (probe && snapshot.fate !== "unplaced" && snapshot.fate !== "abandoned" && readPresence(job.id) !== "left") closedRooms.set(job.id, Date.now());
    const t = hangUps.get(job.id);
    if (t) clearTimeout(t);
    hangUps.delete(job.id);
    leftOnce.delete(job.id);
    if (snapshot.fate === "unplaced" || snapshot.fate === "abandoned") {
      emit(snapshot.fate === "unplaced" ? "job_unplaced" : "job_abandoned", snapshot);
      waiters.get(job.id)?.placed.resolve(snapshot);
    }
    emit("job_ended", snapshot);
    waiters.get(job.id)?.ended.resolve(snapshot);
    waiters.delete(job.id);
  };

  /** Ends a running job on `signal`; the caller (or, without one, the legacy rules) decides the fate. */
  const endJob = (jobId: string, signal: EndSignal): boolean => {
    const job = ledger.get(jobId);
    if (!job) return false;
    const wasRunning = job.state === "running";
    const j = judge(signal, job.hasCaller);
    const error = signal.kind === "job_status" ? signal.error : signal.kind === "agent_left_room" ? "agent worker left the room" : undefined;
    if (!ledger.finish(jobId, j.fate, j.endReason, now(), error, j.cause)) {
      log.debug("late signal for an ended job", { jobId, signal: signal.kind });
      return false;
    }
    const st = job.serverForgot ? undefined : serverJobStatus(signal);
    if (st) job.serverStatus = st.status;
    if (wasRunning && job.hostWorkerId) workers.get(job.hostWorkerId)?.jobs.delete(jobId);
    log.info("job ended", { jobId, fate: j.fate, reason: j.endReason, cause: j.cause, workerId: job.workerId });
    settle(job, copyRecord(job));
    return true;
  };

  /** Ends a job that never ran: no worker was offered it (`unplaced`) or the job request gave up (`abandoned`). */
  const endUnrun = (jobId: string, fate: "unplaced" | "abandoned", reason: string): void => {
    const job = ledger.get(jobId);
    if (!job || !ledger.finish(jobId, livekit ? fate : "unplaced", reason, now())) return;
    log.info("job not run", { jobId, fate: job.fate, reason });
    settle(job, copyRecord(job));
  };

  const markGone = (w: WorkerState, reason: "worker_closed" | "worker_lost" | "worker_gone"): void => {
    if (w.gone) return;
    w.gone = true;
    if (w.graceTimer) clearTimeout(w.graceTimer);
    w.graceTimer = undefined;
    for (const jobId of [...w.jobs]) endJob(jobId, { kind: reason });
    log.info("worker gone", { workerId: w.id, reason });
    emit("worker_gone", view(w), reason);
  };

  // ---- worker sockets -------------------------------------------------------------------

  const findReconnecting = (req: RegisterWorkerRequest, pathPrefix: string): WorkerState | undefined => {
    // The protocol carries no worker identity across reconnects, so match what a worker
    // re-sends unchanged; a distinct path prefix per worker makes the match exact.
    const candidates = workers.all().filter(
      (w) =>
        !w.gone &&
        w.socket === undefined &&
        w.graceTimer !== undefined &&
        w.pathPrefix === pathPrefix &&
        w.agentName === req.agentName &&
        w.namespace === (req.namespace ?? "") &&
        w.jobType === req.type &&
        w.deployment === req.deployment &&
        w.version === req.version,
    );
    candidates.sort((a, b) => (a.disconnectedAt ?? 0) - (b.disconnectedAt ?? 0) || a.seq - b.seq);
    return candidates[0];
  };

  const newWorker = (ws: WebSocket, pathPrefix: string, req: RegisterWorkerRequest, t: number, reconnectOf?: WorkerState): WorkerState => {
    workerSeq++;
    const w: WorkerState = {
      id: `AW_${workerSeq}`,
      seq: workerSeq,
      agentName: req.agentName,
      namespace: req.namespace ?? "",
      jobType: req.type,
      version: req.version,
      deployment: req.deployment,
      reconnectOf: reconnectOf?.id,
      pathPrefix,
      // The server's Worker starts with the zero status, WS_AVAILABLE, and load 0.
      status: "available",
      load: 0,
      socket: ws,
      gone: false,
      registeredAt: t,
      lastMessageAt: t,
      disconnectedAt: undefined,
      reconnects: reconnectOf ? reconnectOf.reconnects + 1 : 0,
      graceTimer: undefined,
      offers: new Map(),
      jobs: new Set(),
    };
    workers.add(w);
    return w;
  };

  /** Registers a worker, or refuses the registration as the real server does (undefined: the socket is being closed). */
  const onRegister = (ws: WebSocket, pathPrefix: string, req: RegisterWorkerRequest, remoteAddress: string): WorkerState | undefined => {
    const t = now();
    const invalid = validateRegistration(req);
    if (invalid) {
      // worker.go HandleRegister returns the error; agentservice.go HandshakeAgentWorker gives up
      // and the connection is closed without a close frame (the worker sees 1006 and retries).
      const r: RegistrationRejection = { at: t, remoteAddress, reason: invalid, agentName: req.agentName, deployment: req.deployment, version: req.version };
      registrationRejections.push(r);
      log.warn("worker registration rejected", { ...r });
      emit("registration_rejected", r);
      ws.terminate();
      return undefined;
    }
    const prev = findReconnecting(req, pathPrefix);
    let w: WorkerState;
    let reconnected = false;
    if (prev && livekit) {
      // LiveKit gives every registration a new id and forgot the old connection's jobs when it
      // deregistered it (agentservice.go deregisterWorker). Their processes may still run (the
      // SDK keeps jobs across reconnects), so the "room" side keeps them, hosted by the new one.
      clearTimeout(prev.graceTimer);
      prev.graceTimer = undefined;
      prev.gone = true;
      w = newWorker(ws, pathPrefix, req, t, prev);
      for (const jobId of prev.jobs) {
        const job = ledger.get(jobId);
        if (!job) continue;
        job.serverForgot = true;
        job.hostWorkerId = w.id;
        w.jobs.add(jobId);
      }
      prev.jobs.clear();
      emit("worker_gone", view(prev), "reregistered");
    } else if (prev) {
      w = prev;
      reconnected = true;
      clearTimeout(w.graceTimer);
      w.graceTimer = undefined;
      w.reconnects++;
      w.socket = ws;
      w.disconnectedAt = undefined;
      w.status = "available";
      w.lastMessageAt = t;
    } else {
      w = newWorker(ws, pathPrefix, req, t);
    }
    // The worker throws (and dies) if anything but the register response comes first.
    send(
      w,
      new ServerMessage({
        message: {
          case: "register",
          value: new RegisterWorkerResponse({
            workerId: w.id,
            serverInfo: new ServerInfo({
              edition: ServerInfo_Edition.Standard,
              version: "openrtc-livekit-dispatcher",
              nodeId: "local",
            }),
          }),
        },
      }),
    );
    log.info(reconnected ? "worker reconnected" : "worker registered", {
      workerId: w.id,
      agentName: w.agentName,
      version: w.version,
      deployment: w.deployment,
      reconnectOf: w.reconnectOf,
    });
    emit(reconnected ? "worker_reconnected" : "worker_registered", view(w));
    const pending = prev === undefined ? undefined : undelivered.get(prev.id);
    if (prev !== undefined && pending !== undefined) {
      undelivered.delete(prev.id);
      for (const jobId of pending) {
        const job = ledger.get(jobId);
        if (job !== undefined) job.hostWorkerId = w.id;
        sendTermination(w, jobId);
      }
    }
    return w;
  };

  const onUpdateWorker = (w: WorkerState, u: UpdateWorkerStatus): void => {
    if (u.status !== undefined) w.status = u.status === WorkerStatus.WS_FULL ? "full" : "available";
    w.load = u.load;
    emit("worker_status", view(w));
  };

  const onUpdateJob = (w: WorkerState, u: UpdateJobStatus): void => {
    const job = ledger.get(u.jobId);
    // A job the server forgot (its worker reconnected) is unknown to LiveKit's server, which
    // ignores the update; the job's process still reports through the new connection, and
    // that report is the only sign here that its agent left the room, so it still ends it.
    if (!job || job.hostWorkerId !== w.id) {
      emit("protocol_error", { workerId: w.id, message: `updateJob for job ${u.jobId} not assigned to this worker` });
      return;
    }
    if (u.status === JobStatus.JS_RUNNING && !job.serverForgot && job.state === "running") job.serverStatus = "JS_RUNNING";
    if (u.status === JobStatus.JS_SUCCESS) endJob(job.id, { kind: "job_status", status: "success" });
    else if (u.status === JobStatus.JS_FAILED) endJob(job.id, { kind: "job_status", status: "failed", ...(u.error ? { error: u.error } : {}) });
  };

  const onSocketClosed = (w: WorkerState, ws: WebSocket, code: number, droppedByUs: boolean): void => {
    if (w.socket !== ws) return;
    w.socket = undefined;
    w.disconnectedAt = now();
    for (const resolve of [...w.offers.values()]) resolve({ answer: "disconnected" });
    w.offers.clear();
    if (closing || w.gone) return;
    const awaitingReconnect = droppedByUs || !CLEAN_CLOSE_CODES.has(code);
    log.info("worker disconnected", { workerId: w.id, code, awaitingReconnect });
    emit("worker_disconnected", view(w), { code, awaitingReconnect });
    if (awaitingReconnect) {
      w.graceTimer = setTimeout(() => markGone(w, "worker_lost"), reconnectGraceMs);
    } else {
      markGone(w, "worker_closed");
    }
  };

  const dropRequested = new WeakSet<WebSocket>();

  const onConnection = (ws: WebSocket, pathPrefix: string, remoteAddress: string): void => {
    let worker: WorkerState | undefined;
    let refused = false;
    // worker.go RegisterTimeout: the handshake has a read deadline.
    const registerTimer = setTimeout(() => {
      if (worker || refused) return;
      refused = true;
      emit("protocol_error", { message: `no register within ${registerTimeoutMs} ms; connection closed` });
      ws.terminate();
    }, registerTimeoutMs);
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (!isBinary) {
        emit("protocol_error", { ...(worker && { workerId: worker.id }), message: "text frame ignored; the protocol is binary protobuf" });
        return;
      }
      let msg: WorkerMessage;
      try {
        msg = WorkerMessage.fromBinary(toBytes(data));
      } catch (e) {
        emit("protocol_error", { ...(worker && { workerId: worker.id }), message: `undecodable WorkerMessage: ${String(e)}` });
        return;
      }
      const m = msg.message;
      if (refused) return;
      if (!worker) {
        if (m.case === "ping") {
          // WorkerRegisterer embeds the ping handler: pings are answered before registration.
          ws.send(new ServerMessage({ message: { case: "pong", value: new WorkerPong({ lastTimestamp: m.value.timestamp, timestamp: BigInt(Date.now()) }) } }).toBinary());
          return;
        }
        if (m.case !== "register") {
          emit("protocol_error", { message: `first message must be register, got ${String(m.case)}` });
          if (livekit) {
            // The real handshake fails on any other signal ("unimplemented worker signal") and closes.
            refused = true;
            ws.terminate();
          }
          return;
        }
        clearTimeout(registerTimer);
        worker = onRegister(ws, pathPrefix, m.value, remoteAddress);
        if (!worker) refused = true;
        return;
      }
      worker.lastMessageAt = now();
      switch (m.case) {
        case "register":
          emit("protocol_error", { workerId: worker.id, message: "register sent twice on one connection" });
          return;
        case "availability": {
          const resolve = worker.offers.get(m.value.jobId);
          if (!resolve) {
            log.debug("availability answer for no pending offer (late or unknown)", { workerId: worker.id, jobId: m.value.jobId });
            return;
          }
          worker.offers.delete(m.value.jobId);
          // worker.go AssignJob checks `terminate` before `available`.
          resolve(m.value.terminate ? { answer: "terminated" } : m.value.available ? { answer: "accepted", response: m.value } : { answer: "unavailable" });
          return;
        }
        case "updateWorker":
          onUpdateWorker(worker, m.value);
          return;
        case "updateJob":
          onUpdateJob(worker, m.value);
          return;
        case "ping":
          send(
            worker,
            new ServerMessage({
              message: {
                case: "pong",
                value: new WorkerPong({ lastTimestamp: m.value.timestamp, timestamp: BigInt(Date.now()) }),
              },
            }),
          );
          return;
        default:
          emit("protocol_error", { workerId: worker.id, message: `unsupported message ${String(m.case)}` });
      }
    });
    ws.on("close", (code: number) => {
      clearTimeout(registerTimer);
      if (worker) onSocketClosed(worker, ws, code, dropRequested.has(ws));
    });
    ws.on("error", (err: Error) => log.warn("worker socket error", { workerId: worker?.id, error: err.message }));
  };

  // ---- HTTP: upgrade (auth) and RoomService ---------------------------------------------

  const wss = new WebSocketServer({ noServer: true });

  const refuse = (socket: Duplex, status: number, text: string, body: string): void => {
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };

  const remoteOf = (req: IncomingMessage): string => `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // Node leaves upgrade sockets without an error listener; a peer that resets mid-handshake
    // (a killed worker) would otherwise crash the process.
    socket.on("error", (e: Error) => log.debug("upgrade socket error", { error: e.message }));
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    if (closing) return refuse(socket, 503, "Service Unavailable", "dispatcher is closing\n");
    if (!pathname.endsWith("/agent")) {
      return refuse(socket, 404, "Not Found", "workers connect to <url>/agent\n");
    }
    const pathPrefix = pathname.slice(0, -"/agent".length).replace(/\/+$/, "");
    void verifyBearer(verifier, req.headers.authorization, "agent").then((auth) => {
      if (!auth.ok) {
        const rejection: AuthRejection = { at: now(), remoteAddress: remoteOf(req), reason: auth.reason };
        rejections.push(rejection);
        log.warn("worker connection rejected", { ...rejection });
        emit("auth_rejected", rejection);
        return refuse(socket, 401, "Unauthorized", `${auth.reason}\n`);
      }
      if (closing) return refuse(socket, 503, "Service Unavailable", "dispatcher is closing\n");
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, pathPrefix, remoteOf(req)));
    });
  };

  const twirpError = (res: ServerResponse, status: number, code: string, msg: string): void => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ code, msg }));
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "GET" && pathname === "/") {
      res.writeHead(200, { "content-type": "text/plain" }).end("OK");
      return;
    }
    if (!pathname.startsWith("/twirp/")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    if (req.method !== "POST" || pathname !== DELETE_ROOM_PATH) {
      twirpError(res, 404, "bad_route", `only POST ${DELETE_ROOM_PATH} is implemented`);
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on("end", () => {
      void (async () => {
        const auth = await verifyBearer(verifier, req.headers.authorization, "roomCreate");
        if (!auth.ok) return twirpError(res, 401, "unauthenticated", auth.reason);
        if (size > MAX_BODY_BYTES) return twirpError(res, 400, "malformed", `body larger than ${MAX_BODY_BYTES} bytes`);
        let room: unknown;
        try {
          room = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { room?: unknown }).room;
        } catch {
          return twirpError(res, 400, "malformed", 'body must be JSON {"room": "<name>"}');
        }
        if (typeof room !== "string" || room === "") {
          return twirpError(res, 400, "invalid_argument", 'body must be JSON {"room": "<name>"} with a non-empty room');
        }
        if (!ledger.all().some((j) => j.roomName === room)) {
          return twirpError(res, 404, "not_found", `room ${room} does not exist`);
        }
        deleteRoom(room);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      })();
    });
  };

  const server: Server = createServer(onRequest);
  server.on("upgrade", onUpgrade);
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = host.includes(":") ? `[${host}]` : host;

  // ---- dispatching ----------------------------------------------------------------------

  const jobKey = (job: JobRecord): WorkerKey => ({ agentName: job.agentName, namespace: job.namespace, jobType: JobType.JT_ROOM, deployment: job.deployment });

  /** Live workers of the job's key, in registration order (disconnected ones are deregistered on the real server). */
  const workersFor = (job: JobRecord): WorkerState[] => {
    const key = jobKey(job);
    const listed = routeByDeployment
      ? workers.ofKey(key)
      : workers.all().filter((w) => w.agentName === key.agentName && w.namespace === key.namespace && w.jobType === key.jobType);
    return listed.filter((w) => !w.gone && w.socket !== undefined);
  };

  const pick = (job: JobRecord, attempted: ReadonlySet<string>): Selection => {
    const live = workersFor(job);
    if (selection === "weighted-by-load") {
      return selectWorkerWeightedByLoad(live.map((w) => ({ id: w.id, status: w.status, load: w.load })), attempted, random);
    }
    const candidates = live
      .filter((w) => !attempted.has(w.id) && w.status !== "full")
      .map((w) => ({ id: w.id, seq: w.seq, load: w.jobs.size + w.offers.size }));
    const id = placementOrder(candidates, selection, rrCursor)[0];
    if (id === undefined) return { ok: false, error: live.length === 0 ? "no workers available" : "no workers with sufficient capacity" };
    rrCursor = workers.get(id)!.seq;
    return { ok: true, id };
  };

  const protoJob = (job: JobRecord): Job =>
    new Job({
      id: job.id,
      type: JobType.JT_ROOM,
      room: new Room({ sid: job.roomSid, name: job.roomName }),
      metadata: job.metadata,
      agentName: job.agentName,
      namespace: job.namespace,
      deployment: job.deployment,
    });

  const offer = (w: WorkerState, job: JobRecord, round: number): Promise<OfferOutcome> => {
    job.offers.push({ workerId: w.id, round, at: now() });
    emit("job_offered", copyRecord(job), w.id);
    return new Promise<OfferOutcome>((resolve) => {
      const timer = setTimeout(() => {
        w.offers.delete(job.id);
        resolve({ answer: "timeout" });
      }, availabilityTimeoutMs);
      w.offers.set(job.id, (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      });
      const sent = send(
        w,
        new ServerMessage({
          message: { case: "availability", value: new AvailabilityRequest({ job: protoJob(job), resuming: false }) },
        }),
      );
      if (!sent) w.offers.get(job.id)?.({ answer: "disconnected" });
    });
  };

  const jobToken = async (job: JobRecord, identity: string): Promise<string> => {
    if (!mintJobTokens) return "";
    const at = new AccessToken(apiKey, apiSecret, { identity, ttl: "6h" });
    at.addGrant({ roomJoin: true, room: job.roomName, agent: true, canPublish: true, canSubscribe: true, canPublishData: true });
    return at.toJwt();
  };

  /** The caller hangs up: the caller's view decides the fate, then the room closes for the agent. */
  const hangUp = (jobId: string): void => {
    hangUps.delete(jobId);
    const job = ledger.get(jobId);
    if (!job || job.state !== "running") return;
    job.hungUpAt = now();
    const presence = readPresence(jobId);
    const signal: EndSignal =
      presence === "left" ? { kind: "agent_left_room", how: "probe" } : presence === "not_joined" ? { kind: "agent_never_joined" } : { kind: "caller_hung_up" };
    endJob(jobId, signal);
    // The room empties when its caller leaves; LiveKit then terminates the agent's job. No
    // media here, so the JobTermination is what tells the worker (agents 1.9 turns it into a
    // shutdownRequest to the job process) — also for a job the server side forgot.
    closeRoomFor(job);
    emit("caller_hung_up", copyRecord(job));
  };

  /** Tries to hand the job to `w`. */
  const tryWorker = async (w: WorkerState, job: JobRecord, round: number): Promise<OfferAnswer> => {
    const outcome = await offer(w, job, round);
    const last = job.offers[job.offers.length - 1];
    if (outcome.answer === "accepted") {
      const identity = outcome.response.participantIdentity || `agent-${job.id}`;
      const token = await jobToken(job, identity);
      if (!closing && w.socket && !w.gone) {
        job.state = "running";
        job.serverStatus = "JS_RUNNING";
        job.workerId = w.id;
        job.hostWorkerId = w.id;
        job.workerVersion = w.version;
        job.workerDeployment = w.deployment;
        job.participantIdentity = identity;
        job.participantAttributes = { ...outcome.response.participantAttributes };
        job.assignedAt = now();
        w.jobs.add(job.id);
        send(
          w,
          new ServerMessage({
            message: { case: "assignment", value: new JobAssignment({ job: protoJob(job), token }) },
          }),
        );
        if (last) last.answer = "accepted";
        log.info("job assigned", { jobId: job.id, workerId: w.id, deployment: w.deployment });
        if (job.hangUpAfterMs !== undefined) hangUps.set(job.id, setTimeout(() => hangUp(job.id), job.hangUpAfterMs));
        // A caller waiting for the agent gives up after joinTimeoutMs (judged agent_never_joined).
        if (job.talkMs !== undefined) hangUps.set(job.id, setTimeout(() => hangUp(job.id), job.joinTimeoutMs ?? DEFAULT_JOIN_TIMEOUT_MS));
        const snapshot = copyRecord(job);
        emit("job_assigned", snapshot);
        waiters.get(job.id)?.placed.resolve(snapshot);
        return "accepted";
      }
      if (last) last.answer = "disconnected";
      emit("job_rejected_by_worker", copyRecord(job), w.id, "disconnected");
      return "disconnected";
    }
    if (last) last.answer = outcome.answer;
    log.info("worker did not take job", { jobId: job.id, workerId: w.id, answer: outcome.answer });
    emit("job_rejected_by_worker", copyRecord(job), w.id, outcome.answer);
    return outcome.answer;
  };

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => {
          sleepers.delete(s);
          resolve();
        }, ms),
        wake: () => {
          clearTimeout(s.timer);
          sleepers.delete(s);
          resolve();
        },
      };
      sleepers.add(s);
    });

  /**
   * One job request, shaped like agentservice.go `JobRequest`: pick a worker, offer, and on a
   * failure try another only when it was "not available" or "worker closed" (`livekit`); an
   * availability timeout or any other failure ends the request. `legacy` moves on after any
   * failure and may run extra rounds.
   */
  const runDispatch = async (job: JobRecord): Promise<void> => {
    for (let round = 1; round <= 1 + retries; round++) {
      if (closing) break;
      if (round > 1) {
        emit("job_retry", copyRecord(job), round);
        await sleep(retryDelayMs);
        if (closing) break;
      }
      job.rounds = round;
      job.state = "offering";
      const attempted = new Set<string>();
      for (;;) {
        if (closing) break;
        const chosen = pick(job, attempted);
        if (!chosen.ok) {
          if (livekit) {
            endUnrun(job.id, job.offers.length === 0 ? "unplaced" : "abandoned", job.offers.length === 0 ? chosen.error : "all_workers_tried");
            return;
          }
          break;
        }
        attempted.add(chosen.id);
        const answer = await tryWorker(workers.get(chosen.id)!, job, round);
        if (answer === "accepted") return;
        if (answer === "terminated") {
          // worker.go AssignJob: `terminate` ends the job JS_SUCCESS without an assignment; JobRequest returns it as done.
          job.serverStatus = "JS_SUCCESS";
          endUnrun(job.id, "abandoned", "worker_terminated_job");
          return;
        }
        if (livekit && answer === "timeout") {
          endUnrun(job.id, "abandoned", closing ? "dispatcher_closed" : "availability_timeout");
          return;
        }
      }
    }
    endUnrun(job.id, job.offers.length === 0 || !livekit ? "unplaced" : "abandoned", closing ? "dispatcher_closed" : "no_worker_available");
  };

  // ---- agent presence ("is the agent still in the room") ---------------------------------

  const readPresence = (jobId: string): AgentPresence | undefined => {
    if (!probe) return undefined;
    try {
      return probe(jobId);
    } catch (e) {
      log.warn("agentPresence probe threw; treating presence as unknown", { jobId, error: String(e) });
      return undefined;
    }
  };

  const presenceTimer = probe
    ? setInterval(() => {
        for (const [id, closedAt] of closedRooms) {
          const presence = readPresence(id);
          if (presence === "left") {
            closedRooms.delete(id);
            continue;
          }
          if (presence !== "in_room" || Date.now() - closedAt < REPEAT_CLOSE_MS) continue;
          const job = ledger.get(id);
          if (job === undefined) {
            closedRooms.delete(id);
            continue;
          }
          if (!job.lateSignals.includes("agent_in_closed_room")) job.lateSignals.push("agent_in_closed_room");
          closedRooms.set(id, Date.now());
          closeRoomFor(job);
        }
        for (const job of ledger.running()) {
          const presence = readPresence(job.id);
          if (presence === "in_room" && job.talkMs !== undefined && job.agentJoinedAt === undefined) {
            // The caller hears the agent answer, talks, then hangs up (replacing the join timeout).
            job.agentJoinedAt = now();
            const waiting = hangUps.get(job.id);
            if (waiting !== undefined) clearTimeout(waiting);
            hangUps.set(job.id, setTimeout(() => hangUp(job.id), job.talkMs));
          }
          if (presence !== "left") {
            leftOnce.delete(job.id);
            continue;
          }
          // Seen gone twice in a row: a worker's own UpdateJobStatus for a job that ended
          // normally usually lands in between and then names the cause instead.
          if (!leftOnce.has(job.id)) {
            leftOnce.add(job.id);
            continue;
          }
          endJob(job.id, { kind: "agent_left_room", how: "probe" });
          closeRoomFor(job);
        }
      }, presencePollMs)
    : undefined;
  presenceTimer?.unref();

  // ---- public API -----------------------------------------------------------------------

  const dispatch = (request: DispatchRequest = {}): JobHandle => {
    if (closing) throw new Error("dispatch: the dispatcher is closed; start a new one");
    for (const key of ["id", "roomName", "metadata", "agentName", "deployment", "namespace"] as const) {
      const v = request[key];
      if (v !== undefined && typeof v !== "string") {
        throw new TypeError(`dispatch: ${key} must be a string, got ${typeof v}`);
      }
    }
    if (request.id === "") throw new TypeError("dispatch: id must be non-empty (or omitted to get AJ_<n>)");
    if (request.roomName === "") throw new TypeError("dispatch: roomName must be non-empty (or omitted)");
    const hang = request.hangUpAfterMs;
    if (hang !== undefined && (typeof hang !== "number" || !Number.isFinite(hang) || hang < 0)) {
      throw new TypeError(`dispatch: hangUpAfterMs must be a finite number of milliseconds >= 0, got ${String(hang)}`);
    }
    if (request.caller !== undefined && typeof request.caller !== "boolean") {
      throw new TypeError(`dispatch: caller must be a boolean, got ${typeof request.caller}`);
    }
    if (request.caller === false && hang !== undefined) {
      throw new TypeError("dispatch: hangUpAfterMs needs a caller; drop caller: false");
    }
    const talk = request.talkMs;
    const join = request.joinTimeoutMs;
    for (const [name, v] of [["talkMs", talk], ["joinTimeoutMs", join]] as const) {
      if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) {
        throw new TypeError(`dispatch: ${name} must be a finite number of milliseconds >= 0, got ${String(v)}`);
      }
    }
    if (talk !== undefined && hang !== undefined) throw new TypeError("dispatch: give either talkMs (counted from the agent joining) or hangUpAfterMs (from assignment), not both");
    if (talk !== undefined && request.caller === false) throw new TypeError("dispatch: talkMs needs a caller; drop caller: false");
    if (talk !== undefined && !probe) throw new TypeError("dispatch: talkMs needs agentPresence (startDispatcher({ agentPresence })) to know when the agent joined");
    if (join !== undefined && talk === undefined) throw new TypeError("dispatch: joinTimeoutMs only applies with talkMs");
    let id = request.id;
    if (id === undefined) {
      do id = `AJ_${++jobSeq}`;
      while (ledger.has(id));
    }
    const record: JobRecord = {
      id,
      roomName: request.roomName ?? `room-${id}`,
      roomSid: `RM_${++roomSeq}`,
      agentName: request.agentName ?? "",
      deployment: request.deployment ?? "",
      namespace: request.namespace ?? "",
      metadata: request.metadata ?? "",
      state: "pending",
      hasCaller: request.caller ?? (hang !== undefined || talk !== undefined),
      serverStatus: "JS_PENDING",
      createdAt: now(),
      rounds: 0,
      offers: [],
      lateSignals: [],
    };
    if (hang !== undefined) record.hangUpAfterMs = hang;
    if (talk !== undefined) record.talkMs = talk;
    if (join !== undefined) record.joinTimeoutMs = join;
    ledger.add(record);
    const w = { placed: deferred<JobRecord>(), ended: deferred<JobRecord>() };
    waiters.set(id, w);
    void runDispatch(record).catch((e: unknown) => {
      log.error("dispatch loop failed", { jobId: record.id, error: String(e) });
      endUnrun(record.id, "unplaced", `dispatcher_error: ${String(e)}`);
    });
    return {
      id,
      placed: w.placed.promise,
      ended: w.ended.promise,
      record: () => copyRecord(record),
    };
  };

  const requireWorker = (method: string, workerId: string): WorkerState => {
    const w = workers.get(workerId);
    if (!w) {
      const known = workers.ids().join(", ") || "none";
      throw new Error(`${method}: no worker with id "${workerId}" (known: ${known})`);
    }
    return w;
  };

  const requireRunningJob = (method: string, jobId: string): JobRecord => {
    const job = ledger.get(jobId);
    if (!job) throw new Error(`${method}: no job with id "${jobId}"`);
    if (job.state !== "running" || !job.workerId) {
      const fate = job.fate ? `, fate ${job.fate}` : "";
      throw new Error(`${method}: job ${jobId} is not running (state ${job.state}${fate}); only assigned, running jobs can be ${method === "terminate" ? "terminated" : "ended"}`);
    }
    return job;
  };

  const terminate = (jobId: string): void => {
    const job = requireRunningJob("terminate", jobId);
    if (job.serverForgot) {
      // agentservice.go JobTerminate: the job is no longer in jobToWorker → "no worker for jobID".
      throw new Error(`terminate: no worker for job ${jobId}: its worker reconnected and LiveKit's server forgot the job (agentservice.go deregisterWorker)`);
    }
    closeRoomFor(job);
    endJob(jobId, { kind: "terminated" });
  };

  const hangUpNow = (jobId: string): void => {
    const job = requireRunningJob("hangUp", jobId);
    if (!job.hasCaller) {
      throw new Error(`hangUp: job ${jobId} has no caller; dispatch it with caller: true or hangUpAfterMs`);
    }
    const t = hangUps.get(jobId);
    if (t) clearTimeout(t);
    hangUp(jobId);
  };

  const agentLeftRoom = (jobId: string): void => {
    const job = requireRunningJob("agentLeftRoom", jobId);
    // room.go: the agent participant left → TerminateJob(AGENT_LEFT_ROOM): a JobTermination and JS_FAILED.
    endJob(jobId, { kind: "agent_left_room", how: "reported" });
    closeRoomFor(job);
  };

  function deleteRoom(roomName: string): string[] {
    const ended: string[] = [];
    for (const job of ledger.running()) {
      if (job.roomName !== roomName || !endJob(job.id, { kind: "room_deleted" })) continue;
      ended.push(job.id);
      // LiveKit terminates the agent jobs of a room that closes.
      if (livekit) closeRoomFor(job);
    }
    // A room deleted again after its job already ended (e.g. an orphaned job process) is noted.
    for (const job of ledger.all()) {
      if (job.roomName === roomName && !ended.includes(job.id) && job.state === "ended") {
        job.lateSignals.push(job.hasCaller ? "cut_short:room_deleted" : "completed:room_deleted");
      }
    }
    return ended;
  }

  const markWorkerGone = (workerId: string): void => {
    const w = requireWorker("markWorkerGone", workerId);
    const ws = w.socket;
    markGone(w, "worker_gone");
    ws?.terminate();
  };

  const dropConnection = (workerId: string): void => {
    const w = requireWorker("dropConnection", workerId);
    if (!w.socket) throw new Error(`dropConnection: worker ${workerId} is not connected`);
    dropRequested.add(w.socket);
    w.socket.terminate();
  };

  const waitForWorkers = (
    count: number,
    opts: { timeoutMs?: number; filter?: (w: WorkerView) => boolean } = {},
  ): Promise<WorkerView[]> => {
    const filter = opts.filter ?? ((w: WorkerView) => w.connected && !w.gone && w.status === "available");
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const matching = () => workers.all().map(view).filter(filter);
    return new Promise((resolve, reject) => {
      const names = ["worker_registered", "worker_reconnected", "worker_status", "worker_disconnected", "worker_gone"] as const;
      const check = () => {
        const m = matching();
        if (m.length >= count) {
          done();
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        done();
        const have = workers.all().map((w) => `${w.id}(${w.status}${w.socket ? "" : ",disconnected"})`);
        reject(new Error(`waitForWorkers: ${count} matching worker(s) not seen within ${timeoutMs} ms; workers: ${have.join(" ") || "none"}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        for (const n of names) events.off(n, check);
      };
      for (const n of names) events.on(n, check);
      check();
    });
  };

  const close = async (): Promise<void> => {
    if (closing) return;
    closing = true;
    if (presenceTimer) clearInterval(presenceTimer);
    closedRooms.clear();
    undelivered.clear();
    for (const t of hangUps.values()) clearTimeout(t);
    hangUps.clear();
    for (const s of [...sleepers]) s.wake();
    for (const w of workers.all()) {
      if (w.graceTimer) clearTimeout(w.graceTimer);
      w.graceTimer = undefined;
      w.socket?.terminate();
    }
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  };

  return {
    url: `ws://${hostForUrl}:${port}`,
    httpUrl: `http://${hostForUrl}:${port}`,
    port,
    profile,
    events,
    workers: () => workers.all().map(view),
    worker: (id) => {
      const w = workers.get(id);
      return w ? view(w) : undefined;
    },
    jobs: () => ledger.all().map(copyRecord),
    job: (id) => {
      const j = ledger.get(id);
      return j ? copyRecord(j) : undefined;
    },
    dispatch,
    terminate,
    deleteRoom,
    markWorkerGone,
    agentLeftRoom,
    hangUp: hangUpNow,
    dropConnection,
    summary: () => ledger.summary(),
    authRejections: () => rejections.map((r) => ({ ...r })),
    registrationRejections: () => registrationRejections.map((r) => ({ ...r })),
    waitForWorkers,
    close,
  };
}
