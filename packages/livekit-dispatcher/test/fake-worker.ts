// A minimal agent-worker protocol client for testing the paths a real @livekit/agents 1.9
// worker never takes (updateJob, ping, malformed frames) and for fast protocol tests. The
// e2e tests use real AgentServer processes instead.
import { EventEmitter } from "node:events";
import {
  JobStatus,
  ServerMessage,
  WorkerMessage,
  WorkerStatus,
  JobType,
} from "@livekit/protocol";
import { AccessToken } from "livekit-server-sdk";
import { WebSocket } from "ws";

export interface FakeWorkerOptions {
  apiKey: string;
  apiSecret: string;
  agentName?: string;
  deployment?: string;
  version?: string;
  /** Path prefix before /agent, e.g. "/w/a". */
  path?: string;
  /** How to answer AvailabilityRequests: accept (default), reject, ignore (never answer), or terminate (`AvailabilityResponse.terminate`). */
  answer?: "accept" | "reject" | "ignore" | "terminate";
  /** RegisterWorkerRequest.type (default JT_ROOM) and namespace. */
  jobType?: number;
  namespace?: string;
  register?: boolean;
}

export interface FakeWorker {
  ws: WebSocket;
  workerId: string;
  received: ServerMessage[];
  answer: "accept" | "reject" | "ignore" | "terminate";
  /** Resolves when the server closes the socket (with the close code). */
  closed: Promise<number>;
  next<C extends NonNullable<ServerMessage["message"]["case"]>>(
    kind: C,
    predicate?: (v: Extract<ServerMessage["message"], { case: C }>["value"]) => boolean,
    timeoutMs?: number,
  ): Promise<Extract<ServerMessage["message"], { case: C }>["value"]>;
  send(msg: WorkerMessage): void;
  register(): Promise<string>;
  status(status: WorkerStatus, load?: number): void;
  jobStatus(jobId: string, status: JobStatus, error?: string): void;
  close(code?: number): Promise<void>;
  /** Abrupt TCP teardown, like a killed process. */
  kill(): Promise<void>;
}

export async function agentToken(apiKey: string, apiSecret: string, grant: Record<string, unknown> = { agent: true }): Promise<string> {
  const t = new AccessToken(apiKey, apiSecret);
  t.addGrant(grant);
  return t.toJwt();
}

export async function connectFakeWorker(url: string, o: FakeWorkerOptions): Promise<FakeWorker> {
  const token = await agentToken(o.apiKey, o.apiSecret);
  const ws = new WebSocket(`${url}${o.path ?? ""}/agent`, { headers: { authorization: `Bearer ${token}` } });
  const bus = new EventEmitter();
  const received: ServerMessage[] = [];
  const closed = new Promise<number>((resolve) => ws.once("close", (code: number) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const fw: FakeWorker = {
    ws,
    workerId: "",
    received,
    closed,
    answer: o.answer ?? "accept",
    next(kind, predicate = () => true, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const listener = (m: ServerMessage) => {
          if (m.message.case === kind && predicate(m.message.value as never)) {
            cleanup();
            resolve(m.message.value as never);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`fake worker: no ${kind} message within ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          bus.off("msg", listener);
        };
        bus.on("msg", listener);
      });
    },
    send(msg) {
      ws.send(msg.toBinary());
    },
    async register() {
      const reply = fw.next("register");
      fw.send(
        new WorkerMessage({
          message: {
            case: "register",
            value: {
              type: o.jobType ?? JobType.JT_ROOM,
              agentName: o.agentName ?? "",
              namespace: o.namespace ?? "",
              version: o.version ?? "fake-1",
              deployment: o.deployment ?? "",
            },
          },
        }),
      );
      fw.workerId = (await reply).workerId;
      return fw.workerId;
    },
    status(status, load = 0) {
      fw.send(new WorkerMessage({ message: { case: "updateWorker", value: { status, load } } }));
    },
    jobStatus(jobId, status, error = "") {
      fw.send(new WorkerMessage({ message: { case: "updateJob", value: { jobId, status, error } } }));
    },
    close(code) {
      return new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once("close", () => resolve());
        ws.close(code);
      });
    },
    kill() {
      return new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        ws.once("close", () => resolve());
        ws.terminate();
      });
    },
  };
  ws.on("message", (data: Buffer) => {
    const m = ServerMessage.fromBinary(new Uint8Array(data));
    received.push(m);
    if (m.message.case === "availability" && m.message.value.job) {
      const jobId = m.message.value.job.id;
      if (fw.answer !== "ignore") {
        fw.send(
          new WorkerMessage({
            message: {
              case: "availability",
              value: {
                jobId,
                available: fw.answer === "accept",
                terminate: fw.answer === "terminate",
                participantIdentity: fw.answer === "accept" ? `agent-${jobId}` : "",
              },
            },
          }),
        );
      }
    }
    bus.emit("msg", m);
  });
  if (o.register ?? true) await fw.register();
  return fw;
}

export { JobStatus, WorkerStatus };
