import { createServer, connect, type Server, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { AgentPool, Session } from "../pool.ts";
import type { SessionStatus } from "../sessions.ts";

/**
 * How the parent knows exactly which calls are live across forked job processes.
 *
 * `@livekit/agents` runs each job in a child process and keeps its process bookkeeping private
 * (and `activeJobs` keeps finished jobs), so the child reports to the parent over a unix
 * socket whose path it inherits in `OPENRTC_SESSION_SOCKET`: one connection per job, a `start`
 * line when the entry runs and an `end` line when the job finishes. A connection that closes
 * without `end` means the job process died: the session ends as `failed`. A job accepted in
 * the parent whose process never reports within `launchTimeoutMs` ends as `cancelled`.
 */
export const SESSION_SOCKET_ENV = "OPENRTC_SESSION_SOCKET";

export type ChannelMessage =
  | { t: "start"; job: string; pid: number }
  | { t: "end"; job: string; status: SessionStatus; error?: string };

export interface SessionChannelOptions {
  launchTimeoutMs?: number;
  socketPath?: string;
}

export class SessionChannel {
  readonly path: string;
  private readonly server: Server;
  private readonly launchTimers = new Map<string, NodeJS.Timeout>();
  private readonly launchTimeoutMs: number;

  private constructor(
    private readonly pool: AgentPool,
    server: Server,
    path: string,
    launchTimeoutMs: number,
  ) {
    this.server = server;
    this.path = path;
    this.launchTimeoutMs = launchTimeoutMs;
  }

  static async listen(pool: AgentPool, options: SessionChannelOptions = {}): Promise<SessionChannel> {
    const path = options.socketPath ?? join(tmpdir(), `openrtc-${process.pid}-${randomBytes(4).toString("hex")}.sock`);
    const server = createServer();
    const channel = new SessionChannel(pool, server, path, options.launchTimeoutMs ?? 60_000);
    server.on("connection", (socket) => channel.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.unref();
    return channel;
  }

  /** Called when the parent accepted a job: the child must report it within the launch timeout. */
  expectLaunch(session: Session): void {
    const jobId = session.info.jobId;
    const timer = setTimeout(() => {
      this.launchTimers.delete(jobId);
      session.end({ status: "cancelled", error: `job was accepted but its process never started within ${this.launchTimeoutMs} ms (no assignment arrived?)` });
    }, this.launchTimeoutMs);
    timer.unref();
    this.launchTimers.set(jobId, timer);
  }

  close(): Promise<void> {
    for (const timer of this.launchTimers.values()) clearTimeout(timer);
    this.launchTimers.clear();
    return new Promise((resolve) => {
      this.server.close(() => {
        rmSync(this.path, { force: true });
        resolve();
      });
    });
  }

  private accept(socket: Socket): void {
    let jobId: string | undefined;
    let ended = false;
    const lines = createInterface({ input: socket });
    lines.on("line", (line) => {
      let message: ChannelMessage;
      try {
        message = JSON.parse(line) as ChannelMessage;
      } catch {
        this.pool.logger.warn({ line: line.slice(0, 200) }, "malformed session channel message ignored");
        return;
      }
      if (message.t === "start" && typeof message.job === "string") {
        jobId = message.job;
        const timer = this.launchTimers.get(jobId);
        if (timer !== undefined) clearTimeout(timer);
        this.launchTimers.delete(jobId);
        if (this.pool.session(jobId) === undefined) {
          this.pool.logger.warn({ job_id: jobId, pid: message.pid }, "a job process started a job this worker has no live session for (accepted outside OpenRTC's requestFunc?)");
        }
      } else if (message.t === "end" && typeof message.job === "string") {
        ended = true;
        try {
          this.pool.session(message.job)?.end({ status: message.status, error: message.error });
        } catch (error) {
          // A bad status from a child must not take the parent (and every live call) down.
          this.pool.session(message.job)?.end({ status: "failed", error: `job process reported an invalid outcome: ${String(error)}` });
        }
      }
    });
    socket.on("error", () => {
      // A job process killed mid-write resets the socket; the close below ends its session.
    });
    socket.on("close", () => {
      if (jobId === undefined || ended) return;
      this.pool.session(jobId)?.end({ status: "failed", error: "job process exited while the call was live" });
    });
  }
}

/** The child's side: one connection per job. */
export class SessionReporter {
  private constructor(
    private readonly socket: Socket,
    private readonly jobId: string,
  ) {}

  /** Connects to the parent; resolves to undefined when not running under an OpenRTC parent. */
  static async connect(jobId: string, path = process.env[SESSION_SOCKET_ENV]): Promise<SessionReporter | undefined> {
    if (path === undefined || path === "") return undefined;
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const reporter = new SessionReporter(socket, jobId);
    reporter.send({ t: "start", job: jobId, pid: process.pid });
    return reporter;
  }

  end(status: SessionStatus, error?: string): Promise<void> {
    const message: ChannelMessage = { t: "end", job: this.jobId, status, ...(error === undefined ? {} : { error }) };
    return new Promise((resolve) => {
      this.socket.end(`${JSON.stringify(message)}\n`, () => resolve());
    });
  }

  private send(message: ChannelMessage): void {
    this.socket.write(`${JSON.stringify(message)}\n`);
  }
}
