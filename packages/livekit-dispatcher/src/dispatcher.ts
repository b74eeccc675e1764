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
import { copyRecord, JobLedger } from "./job-ledger.ts";
import { placementOrder } from "./placement.ts";
import type {
  AuthRejection,
  DispatchRequest,
  Dispatcher,
  DispatcherEvents,
  DispatcherLogger,
  DispatcherOptions,
  JobFate,
  JobHandle,
  JobRecord,
  OfferAnswer,
  PlacementStrategy,
  TypedEmitter,
  WorkerView,
} from "./types.ts";

const SILENT: DispatcherLogger = { debug() {}, info() {}, warn() {}, error() {} };
const DELETE_ROOM_PATH = "/twirp/livekit.RoomService/DeleteRoom";
const MAX_BODY_BYTES = 64 * 1024;
/** Close codes a worker sends when it shuts its own socket (AgentServer.close() sends no code → 1005). */
const CLEAN_CLOSE_CODES = new Set([1000, 1005]);

type OfferOutcome = { answer: "accepted"; response: AvailabilityResponse } | { answer: Exclude<OfferAnswer, "accepted"> };

interface WorkerState {
  id: string;
  seq: number;
  agentName: string;
  version: string;
  deployment: string;
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
  const strategy: PlacementStrategy = options.strategy ?? "least-jobs";
  if (strategy !== "least-jobs" && strategy !== "round-robin") {
    throw new TypeError(`startDispatcher: strategy must be "least-jobs" or "round-robin", got ${JSON.stringify(strategy)}`);
  }
  const retries = options.unplacedRetries ?? 0;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError(`startDispatcher: unplacedRetries must be an integer >= 0, got ${String(retries)}`);
  }
  const availabilityTimeoutMs = positiveMs("availabilityTimeoutMs", options.availabilityTimeoutMs, 5000);
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
  const workers = new Map<string, WorkerState>();
  const waiters = new Map<string, { placed: Deferred<JobRecord>; ended: Deferred<JobRecord> }>();
  const rejections: AuthRejection[] = [];
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

  const endJob = (jobId: string, fate: JobFate, reason: string, error?: string): boolean => {
    const job = ledger.get(jobId);
    if (!job) return false;
    const wasRunning = job.state === "running";
    if (!ledger.finish(jobId, fate, reason, now(), error)) {
      log.debug("late signal for an ended job", { jobId, fate, reason });
      return false;
    }
    if (wasRunning && job.workerId) workers.get(job.workerId)?.jobs.delete(jobId);
    log.info("job ended", { jobId, fate, reason, workerId: job.workerId });
    const snapshot = copyRecord(job);
    if (fate === "unplaced") {
      emit("job_unplaced", snapshot);
      waiters.get(jobId)?.placed.resolve(snapshot);
    }
    emit("job_ended", snapshot);
    waiters.get(jobId)?.ended.resolve(snapshot);
    waiters.delete(jobId);
    return true;
  };

  const markGone = (w: WorkerState, reason: string): void => {
    if (w.gone) return;
    w.gone = true;
    if (w.graceTimer) clearTimeout(w.graceTimer);
    w.graceTimer = undefined;
    for (const jobId of [...w.jobs]) endJob(jobId, "dropped", reason);
    log.info("worker gone", { workerId: w.id, reason });
    emit("worker_gone", view(w), reason);
  };

  // ---- worker sockets -------------------------------------------------------------------

  const findReconnecting = (req: RegisterWorkerRequest, pathPrefix: string): WorkerState | undefined => {
    // The protocol carries no worker identity across reconnects, so match what a worker
    // re-sends unchanged; a distinct path prefix per worker makes the match exact.
    const candidates = [...workers.values()].filter(
      (w) =>
        !w.gone &&
        w.socket === undefined &&
        w.graceTimer !== undefined &&
        w.pathPrefix === pathPrefix &&
        w.agentName === req.agentName &&
        w.deployment === req.deployment &&
        w.version === req.version,
    );
    candidates.sort((a, b) => (a.disconnectedAt ?? 0) - (b.disconnectedAt ?? 0) || a.seq - b.seq);
    return candidates[0];
  };

  const onRegister = (ws: WebSocket, pathPrefix: string, req: RegisterWorkerRequest): WorkerState => {
    const t = now();
    let w = findReconnecting(req, pathPrefix);
    const reconnected = w !== undefined;
    if (w) {
      clearTimeout(w.graceTimer);
      w.graceTimer = undefined;
      w.reconnects++;
      w.socket = ws;
      w.disconnectedAt = undefined;
      w.status = "available";
      w.lastMessageAt = t;
    } else {
      workerSeq++;
      w = {
        id: `AW_${workerSeq}`,
        seq: workerSeq,
        agentName: req.agentName,
        version: req.version,
        deployment: req.deployment,
        pathPrefix,
        status: "available",
        load: 0,
        socket: ws,
        gone: false,
        registeredAt: t,
        lastMessageAt: t,
        disconnectedAt: undefined,
        reconnects: 0,
        graceTimer: undefined,
        offers: new Map(),
        jobs: new Set(),
      };
      workers.set(w.id, w);
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
    });
    emit(reconnected ? "worker_reconnected" : "worker_registered", view(w));
    return w;
  };

  const onUpdateWorker = (w: WorkerState, u: UpdateWorkerStatus): void => {
    if (u.status !== undefined) w.status = u.status === WorkerStatus.WS_FULL ? "full" : "available";
    w.load = u.load;
    emit("worker_status", view(w));
  };

  const onUpdateJob = (w: WorkerState, u: UpdateJobStatus): void => {
    const job = ledger.get(u.jobId);
    if (!job || job.workerId !== w.id) {
      emit("protocol_error", { workerId: w.id, message: `updateJob for job ${u.jobId} not assigned to this worker` });
      return;
    }
    if (u.status === JobStatus.JS_SUCCESS) endJob(job.id, "completed", "job_status");
    else if (u.status === JobStatus.JS_FAILED) endJob(job.id, "failed", "job_status", u.error || undefined);
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

  const onConnection = (ws: WebSocket, pathPrefix: string): void => {
    let worker: WorkerState | undefined;
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
      if (!worker) {
        if (m.case !== "register") {
          emit("protocol_error", { message: `first message must be register, got ${String(m.case)}` });
          return;
        }
        worker = onRegister(ws, pathPrefix, m.value);
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
          resolve(m.value.available ? { answer: "accepted", response: m.value } : { answer: "unavailable" });
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
      wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, pathPrefix));
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

  const eligible = (w: WorkerState, job: JobRecord): boolean =>
    !w.gone && w.socket !== undefined && w.status !== "full" && w.agentName === job.agentName;

  const protoJob = (job: JobRecord): Job =>
    new Job({
      id: job.id,
      type: JobType.JT_ROOM,
      room: new Room({ sid: job.roomSid, name: job.roomName }),
      metadata: job.metadata,
      agentName: job.agentName,
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

  /** Tries to hand the job to `w`; true when the worker took it. */
  const tryWorker = async (w: WorkerState, job: JobRecord, round: number): Promise<boolean> => {
    const outcome = await offer(w, job, round);
    const last = job.offers[job.offers.length - 1];
    if (outcome.answer === "accepted") {
      const identity = outcome.response.participantIdentity || `agent-${job.id}`;
      const token = await jobToken(job, identity);
      if (!closing && w.socket && !w.gone) {
        job.state = "running";
        job.workerId = w.id;
        job.workerVersion = w.version;
        job.workerDeployment = w.deployment;
        job.participantIdentity = identity;
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
        const snapshot = copyRecord(job);
        emit("job_assigned", snapshot);
        waiters.get(job.id)?.placed.resolve(snapshot);
        return true;
      }
      if (last) last.answer = "disconnected";
      emit("job_rejected_by_worker", copyRecord(job), w.id, "disconnected");
      return false;
    }
    if (last) last.answer = outcome.answer;
    log.info("worker did not take job", { jobId: job.id, workerId: w.id, answer: outcome.answer });
    emit("job_rejected_by_worker", copyRecord(job), w.id, outcome.answer);
    return false;
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
      const tried = new Set<string>();
      for (;;) {
        if (closing) break;
        const candidates = [...workers.values()]
          .filter((w) => !tried.has(w.id) && eligible(w, job))
          .map((w) => ({ id: w.id, seq: w.seq, load: w.jobs.size + w.offers.size }));
        const nextId = placementOrder(candidates, strategy, rrCursor)[0];
        if (nextId === undefined) break;
        const w = workers.get(nextId)!;
        tried.add(nextId);
        rrCursor = w.seq;
        if (await tryWorker(w, job, round)) return;
      }
    }
    endJob(job.id, "unplaced", closing ? "dispatcher_closed" : "no_worker_available");
  };

  // ---- public API -----------------------------------------------------------------------

  const dispatch = (request: DispatchRequest = {}): JobHandle => {
    if (closing) throw new Error("dispatch: the dispatcher is closed; start a new one");
    for (const key of ["id", "roomName", "metadata", "agentName"] as const) {
      const v = request[key];
      if (v !== undefined && typeof v !== "string") {
        throw new TypeError(`dispatch: ${key} must be a string, got ${typeof v}`);
      }
    }
    if (request.id === "") throw new TypeError("dispatch: id must be non-empty (or omitted to get AJ_<n>)");
    if (request.roomName === "") throw new TypeError("dispatch: roomName must be non-empty (or omitted)");
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
      metadata: request.metadata ?? "",
      state: "pending",
      createdAt: now(),
      rounds: 0,
      offers: [],
      lateSignals: [],
    };
    ledger.add(record);
    const w = { placed: deferred<JobRecord>(), ended: deferred<JobRecord>() };
    waiters.set(id, w);
    void runDispatch(record).catch((e: unknown) => {
      log.error("dispatch loop failed", { jobId: record.id, error: String(e) });
      endJob(record.id, "unplaced", `dispatcher_error: ${String(e)}`);
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
      const known = [...workers.keys()].join(", ") || "none";
      throw new Error(`${method}: no worker with id "${workerId}" (known: ${known})`);
    }
    return w;
  };

  const terminate = (jobId: string): void => {
    const job = ledger.get(jobId);
    if (!job) throw new Error(`terminate: no job with id "${jobId}"`);
    if (job.state !== "running" || !job.workerId) {
      const fate = job.fate ? `, fate ${job.fate}` : "";
      throw new Error(`terminate: job ${jobId} is not running (state ${job.state}${fate}); only assigned, running jobs can be terminated`);
    }
    const w = workers.get(job.workerId);
    const sent = w ? send(w, new ServerMessage({ message: { case: "termination", value: new JobTermination({ jobId }) } })) : false;
    if (!sent) log.warn("termination not delivered: worker not connected", { jobId, workerId: job.workerId });
    endJob(jobId, "terminated", "terminated");
  };

  function deleteRoom(roomName: string): string[] {
    const ended: string[] = [];
    for (const job of ledger.running()) {
      if (job.roomName === roomName && endJob(job.id, "completed", "room_deleted")) ended.push(job.id);
    }
    // A room deleted again after its job already ended (e.g. an orphaned job process) is noted.
    for (const job of ledger.all()) {
      if (job.roomName === roomName && !ended.includes(job.id) && job.state === "ended") {
        job.lateSignals.push("completed:room_deleted");
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
    const matching = () => [...workers.values()].map(view).filter(filter);
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
        const have = [...workers.values()].map((w) => `${w.id}(${w.status}${w.socket ? "" : ",disconnected"})`);
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
    for (const s of [...sleepers]) s.wake();
    for (const w of workers.values()) {
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
    events,
    workers: () => [...workers.values()].map(view),
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
    dropConnection,
    summary: () => ledger.summary(),
    authRejections: () => rejections.map((r) => ({ ...r })),
    waitForWorkers,
    close,
  };
}
