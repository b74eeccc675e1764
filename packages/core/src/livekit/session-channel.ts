import { createServer, connect, type Server, type Socket } from "node:net";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { AgentPool, Session } from "../pool.ts";
import { describeError } from "../isolation.ts";
import type { SessionStatus } from "../sessions.ts";
import { defaultAgentIdentity, MAX_JOB_TOKEN, verifyJobToken } from "./job-token.ts";

/**
 * How the parent knows exactly which calls are live across forked job processes.
 *
 * `@livekit/agents` runs each job in a child process and keeps its process bookkeeping private
 * (and `activeJobs` keeps finished jobs), so the child reports to the parent over a unix
 * socket whose path it inherits in `OPENRTC_SESSION_SOCKET`: one connection per job, a `start`
 * line when the entry runs and an `end` line when the job finishes. A connection that closes
 * without `end` means the job process died: the session ends as `failed`. A job accepted in
 * the parent whose process never reports within `launchTimeoutMs` ends as `cancelled`.
 *
 * Who may end which session (the parent holds every live call, so a peer on this socket must
 * not be able to end one it does not own):
 * - the socket lives in a fresh directory of mode 0700 (only the worker's user, and root, can
 *   enter it), and the socket itself is 0600;
 * - every `start` carries the channel key (`OPENRTC_SESSION_KEY`, 32 random bytes per parent)
 *   that job processes inherit through their environment; a wrong key closes the connection.
 *   This stops a process that can reach the socket but not read the worker's environment (e.g.
 *   another container, same uid, sharing the volume the socket is on);
 * - when the worker opts in with the LiveKit API secret (`jobTokenSecret`; off by default), every
 *   `start` also carries its job's own proof: the room-join token
 *   LiveKit sent with the job's assignment (agents-js `ctx.info.token`), which LiveKit signs HS256
 *   with the worker's API secret for the job's room and the accepted identity. The parent checks
 *   the signature, that `video.room` is the session's room, that it has not expired, and `sub`
 *   (the identity the job was accepted with when `expectLaunch` was told it, else agents-js'
 *   default `agent-<job id>` is held against other live jobs); anything else is refused
 *   `bad_job_token`. A sibling job process has its own token, not another job's: with what it
 *   was given it cannot claim (and later end) a job it does not run, and the real process still
 *   claims it (but see the limits below);
 * - a connection binds to the first job it claims; a second claim of a job another connection
 *   holds is refused, and `end` counts only on the claiming connection, for its own job;
 * - a claim of a job with no live session (its launch timeout already ended it) is refused: the
 *   job process is told, and the agent wrapper shuts the job down rather than run it untracked.
 *
 * Why a token and not a secret of our own: `@livekit/agents` forks idle job processes before any
 * job exists (`numIdleProcesses`), so their environment is fixed at fork time and cannot carry a
 * per-job secret; the assignment's token is the one per-job secret each job process receives.
 *
 * The limits, honestly:
 * - with no secret configured (the default: LiveKit Cloud may sign job tokens with a key other
 *   than the worker's, and a wrong guess here would refuse every call), it is as
 *   before: the key is per worker, and any process holding it could claim a job before its real
 *   process does (first claim wins; the real process is refused and shuts its job down, and the
 *   claimant's connection holds the session, which ends as failed when it closes). The parent
 *   logs this once at `listen` (info);
 * - the proof binds a job to whoever holds that job's token, or the API secret. agents-js 1.9
 *   gives every job process the API secret too (`RunningJobInfo.apiSecret`, and
 *   `LIVEKIT_API_SECRET` in the environment it inherits), so a job process that deliberately
 *   mints a token could still pose as another job. What the token stops is a job process (or
 *   anything else holding the key) claiming a job it was not given without doing that: a bug, a
 *   stale or reused job id, a token for another room or identity, a forged or expired token;
 * - a token whose `sub` is a custom identity is held to it only when `expectLaunch` is given
 *   that identity.
 */
export const SESSION_SOCKET_ENV = "OPENRTC_SESSION_SOCKET";
/** The channel key job processes present in `start`. Set by `SessionChannel.listen`. */
export const SESSION_KEY_ENV = "OPENRTC_SESSION_KEY";

export type ChannelMessage =
  | { t: "start"; job: string; pid: number; key?: string; token?: string }
  | { t: "end"; job: string; status: SessionStatus; error?: string };

/** Why the parent refused a job process's `start`. */
export type ChannelRefusal = "no_session" | "already_claimed" | "bad_key" | "bad_job_token";

/** What the parent answers a `start` with. */
export type ChannelReply = { t: "ok"; job: string } | { t: "refused"; job: string; reason: ChannelRefusal; message: string };

export interface SessionChannelOptions {
  launchTimeoutMs?: number;
  /**
   * Where to listen. Default: `s.sock` in a fresh 0700 directory under the OS tmp dir. A given
   * path's directory should be private to the worker's user (a warning is logged otherwise).
   */
  socketPath?: string;
  /**
   * Put `OPENRTC_SESSION_SOCKET` and `OPENRTC_SESSION_KEY` into `process.env`, which job
   * processes inherit when forked. Default true.
   */
  exportEnv?: boolean;
  /** How long a connection may stay open without a valid `start`. Default 10 s. */
  claimTimeoutMs?: number;
  /**
   * The LiveKit API secret that signs each job's room-join token (LiveKit signs a job's token
   * with the secret of the key the worker connected with). When known, every `start` must carry
   * its job's token (`ctx.info.token`) and it must verify: HS256 with this secret, `video.room`
   * the session's room, not expired, and `sub` the accepted identity when that is known. Off by
   * default (undefined or `""`: the channel key and first claim bind a job). Opt in only where
   * LiveKit signs job tokens with the worker's own key and secret (a self-hosted livekit-server):
   * were it another key (LiveKit Cloud may use one), every job would be refused.
   */
  jobTokenSecret?: string;
}

/** Per-launch facts the parent knows from accepting the job. */
export interface LaunchExpectation {
  /**
   * The participant identity the job was accepted with (what LiveKit puts in the job token's
   * `sub`). Without it, `sub` is held only to agents-js' default (`agent-<job id>`): a token whose
   * `sub` is another live job's default identity is refused, any other identity is not checked.
   */
  identity?: string;
}

/** Longest line accepted on the channel; a longer one is discarded up to its newline (room for a `start` with a job token of `MAX_JOB_TOKEN`). */
export const MAX_CHANNEL_LINE = 32_768;
const MAX_JOB_ID = 256;
const MAX_ERROR_TEXT = 2000;
/** Bad messages logged per connection (the rest are counted, then summarised on close). */
const LOGGED_BAD_MESSAGES = 3;
const STATUSES: ReadonlySet<string> = new Set(["success", "failed", "cancelled"]);

export type ParsedChannelMessage = { ok: true; message: ChannelMessage } | { ok: false; problem: string };

/**
 * Validates one line against the channel's schema. Never throws: whatever a peer sends is either
 * a well-formed message or a short problem description (which never quotes the line).
 */
export function parseChannelMessage(line: string): ParsedChannelMessage {
  if (line.length > MAX_CHANNEL_LINE) return { ok: false, problem: "line too long" };
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, problem: "not JSON" };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { ok: false, problem: "not a JSON object" };
  const m = value as Record<string, unknown>;
  const job = m.job;
  if (typeof job !== "string" || job.length === 0 || job.length > MAX_JOB_ID) return { ok: false, problem: "job must be a non-empty string" };
  if (m.t === "start") {
    const pid = m.pid;
    if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 0) return { ok: false, problem: "start.pid must be a positive integer" };
    const key = m.key;
    if (key !== undefined && typeof key !== "string") return { ok: false, problem: "start.key must be a string" };
    const token = m.token;
    if (token !== undefined && (typeof token !== "string" || token.length > MAX_JOB_TOKEN)) return { ok: false, problem: `start.token must be a string of at most ${MAX_JOB_TOKEN} characters` };
    const message: ChannelMessage = { t: "start", job, pid };
    if (key !== undefined) message.key = key;
    if (token !== undefined) message.token = token;
    return { ok: true, message };
  }
  if (m.t === "end") {
    const status = m.status;
    if (typeof status !== "string" || !STATUSES.has(status)) return { ok: false, problem: 'end.status must be "success", "failed" or "cancelled"' };
    const error = m.error;
    if (error !== undefined && typeof error !== "string") return { ok: false, problem: "end.error must be a string" };
    const message: ChannelMessage = { t: "end", job, status: status as SessionStatus };
    if (error !== undefined) message.error = error.length > MAX_ERROR_TEXT ? `${error.slice(0, MAX_ERROR_TEXT)}…` : error;
    return { ok: true, message };
  }
  return { ok: false, problem: 't must be "start" or "end"' };
}

/** Splits a byte stream into lines, bounded: a line past `max` is dropped up to its newline. */
class LineSplitter {
  private buffer = "";
  private skipping = false;

  constructor(
    private readonly max: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverlong: () => void,
  ) {}

  push(chunk: string): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf("\n", start);
      if (newline === -1) break;
      const piece = chunk.slice(start, newline);
      start = newline + 1;
      if (this.skipping) {
        this.skipping = false;
        this.buffer = "";
        continue;
      }
      const line = this.buffer + piece;
      this.buffer = "";
      if (line.length > this.max) this.onOverlong();
      else this.onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
    }
    if (this.skipping) return;
    this.buffer += chunk.slice(start);
    if (this.buffer.length > this.max) {
      this.buffer = "";
      this.skipping = true;
      this.onOverlong();
    }
  }
}

/** One job process's connection, as the parent sees it. */
interface Peer {
  readonly socket: Socket;
  /** The job this connection claimed, and the session it then held. */
  job: string | undefined;
  session: Session | undefined;
  ended: boolean;
  badMessages: number;
  claimTimer: NodeJS.Timeout | undefined;
}

export class SessionChannel {
  readonly path: string;
  /** What a job process needs in its environment to report (also set in `process.env` by default). */
  readonly env: Readonly<Record<string, string>>;
  private readonly server: Server;
  private readonly launchTimers = new Map<string, NodeJS.Timeout>();
  private readonly claims = new Map<string, Peer>();
  private readonly peers = new Set<Peer>();
  private readonly launchTimeoutMs: number;
  private readonly claimTimeoutMs: number;
  private readonly key: Buffer;
  private readonly ownDirectory: string | undefined;
  /** The LiveKit API secret job tokens are verified with; undefined: no per-job proof. */
  private readonly jobTokenSecret: string | undefined;
  private readonly identities = new WeakMap<Session, string>();

  private constructor(
    private readonly pool: AgentPool,
    server: Server,
    path: string,
    key: Buffer,
    ownDirectory: string | undefined,
    launchTimeoutMs: number,
    claimTimeoutMs: number,
    jobTokenSecret: string | undefined,
  ) {
    this.server = server;
    this.jobTokenSecret = jobTokenSecret;
    this.path = path;
    this.key = key;
    this.ownDirectory = ownDirectory;
    this.launchTimeoutMs = launchTimeoutMs;
    this.claimTimeoutMs = claimTimeoutMs;
    this.env = { [SESSION_SOCKET_ENV]: path, [SESSION_KEY_ENV]: key.toString("hex") };
  }

  static async listen(pool: AgentPool, options: SessionChannelOptions = {}): Promise<SessionChannel> {
    let path = options.socketPath;
    let ownDirectory: string | undefined;
    if (path === undefined) {
      // mkdtemp creates the directory 0700; chmod again in case a umask-less platform differs.
      ownDirectory = mkdtempSync(join(tmpdir(), "openrtc-"));
      chmodSync(ownDirectory, 0o700);
      path = join(ownDirectory, "s.sock");
    } else {
      warnIfShared(pool, dirname(path));
    }
    const key = randomBytes(32);
    const server = createServer();
    const secret = options.jobTokenSecret ?? "";
    const channel = new SessionChannel(pool, server, path, key, ownDirectory, options.launchTimeoutMs ?? 60_000, options.claimTimeoutMs ?? 10_000, secret === "" ? undefined : secret);
    server.on("connection", (socket) => channel.accept(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => {
          server.off("error", reject);
          resolve();
        });
      });
      chmodSync(path, 0o600);
    } catch (error) {
      server.close();
      if (ownDirectory !== undefined) rmSync(ownDirectory, { recursive: true, force: true });
      throw error;
    }
    // A listening error later (none is expected on a unix socket) must not crash the parent.
    server.on("error", (error) => pool.logger.error({ err: describeError(error) }, "session channel server error"));
    server.unref();
    if (options.exportEnv !== false) Object.assign(process.env, channel.env);
    if (channel.jobTokenSecret === undefined) {
      pool.logger.info(
        {},
        "session channel: job tokens are not verified (jobTokenSecret not set); a job is bound to the first job process of this worker that claims it with the channel key",
      );
    }
    return channel;
  }

  /** Whether a `start` must prove its job with the job's LiveKit token. */
  get verifiesJobTokens(): boolean {
    return this.jobTokenSecret !== undefined;
  }

  /**
   * Called when the parent accepted a job: the child must report it within the launch timeout.
   * `identity`: the participant identity the job was accepted with, held against the token's `sub`.
   */
  expectLaunch(session: Session, expectation: LaunchExpectation = {}): void {
    const jobId = session.info.jobId;
    if (expectation.identity !== undefined) this.identities.set(session, expectation.identity);
    if (this.claims.get(jobId)?.session === session) return;
    const previous = this.launchTimers.get(jobId);
    if (previous !== undefined) clearTimeout(previous);
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
        if (this.ownDirectory !== undefined) rmSync(this.ownDirectory, { recursive: true, force: true });
        resolve();
      });
      // server.close waits for every connection; by now (after the pool closed) none should hold
      // a call, and a stray one must not keep the worker from exiting.
      for (const peer of this.peers) peer.socket.destroy();
    });
  }

  private accept(socket: Socket): void {
    const peer: Peer = { socket, job: undefined, session: undefined, ended: false, badMessages: 0, claimTimer: undefined };
    this.peers.add(peer);
    // A connection that never claims a job holds a descriptor for nothing.
    peer.claimTimer = setTimeout(() => {
      if (peer.job === undefined) socket.destroy();
    }, this.claimTimeoutMs);
    peer.claimTimer.unref();
    socket.setEncoding("utf8");
    const lines = new LineSplitter(
      MAX_CHANNEL_LINE,
      (line) => this.onLine(peer, line),
      () => this.bad(peer, "line too long"),
    );
    socket.on("data", (chunk: string) => {
      try {
        lines.push(chunk);
      } catch (error) {
        // Nothing above should throw; if it does, this one connection goes, never the parent.
        this.pool.logger.error({ err: describeError(error) }, "session channel: handling a message failed; closing that connection");
        socket.destroy();
      }
    });
    socket.on("error", () => {
      // A job process killed mid-write resets the socket; the close below ends its session.
    });
    socket.on("close", () => this.onClose(peer));
  }

  private onLine(peer: Peer, line: string): void {
    if (line === "") return;
    const parsed = parseChannelMessage(line);
    if (!parsed.ok) return this.bad(peer, parsed.problem);
    const message = parsed.message;
    if (message.t === "start") this.onStart(peer, message);
    else this.onEnd(peer, message);
  }

  private onStart(peer: Peer, message: Extract<ChannelMessage, { t: "start" }>): void {
    const job = message.job;
    if (peer.job !== undefined) return this.bad(peer, `start for ${job === peer.job ? "the same job" : "another job"} on a connection already bound to a job`);
    if (!this.keyMatches(message.key)) {
      this.pool.logger.warn({ job_id: job, pid: message.pid }, "session channel: a start with a wrong or missing channel key was refused");
      return this.refuse(peer, job, "bad_key", "wrong or missing channel key");
    }
    const session = this.pool.session(job);
    if (session === undefined) {
      this.pool.logger.warn(
        { job_id: job, pid: message.pid },
        "a job process started a job this worker has no live session for (its launch timeout ended it, or it was accepted outside OpenRTC); told it to shut down",
      );
      return this.refuse(peer, job, "no_session", "this worker has no live session for the job (it ended before the job process started)");
    }
    const tokenProblem = this.jobTokenProblem(session, message.token);
    if (tokenProblem !== undefined) {
      // Never the token itself: the problem names only what failed.
      this.pool.logger.warn({ job_id: job, pid: message.pid, problem: tokenProblem }, "session channel: a start whose job token does not prove it runs the job was refused");
      return this.refuse(peer, job, "bad_job_token", `the job token does not prove this process runs the job: ${tokenProblem}`);
    }
    const holder = this.claims.get(job);
    if (holder !== undefined && holder !== peer && holder.session === session && !holder.socket.destroyed) {
      this.pool.logger.warn({ job_id: job, pid: message.pid }, "session channel: a second claim of a live job was refused");
      return this.refuse(peer, job, "already_claimed", "another job process already reported this job");
    }
    peer.job = job;
    peer.session = session;
    if (peer.claimTimer !== undefined) clearTimeout(peer.claimTimer);
    this.claims.set(job, peer);
    const timer = this.launchTimers.get(job);
    if (timer !== undefined) clearTimeout(timer);
    this.launchTimers.delete(job);
    this.reply(peer, { t: "ok", job });
  }

  private onEnd(peer: Peer, message: Extract<ChannelMessage, { t: "end" }>): void {
    if (peer.job === undefined || peer.session === undefined) return this.bad(peer, "end before start");
    if (message.job !== peer.job) return this.bad(peer, "end for a job this connection did not claim");
    if (peer.ended) return this.bad(peer, "a second end");
    peer.ended = true;
    this.release(peer);
    peer.session.end({ status: message.status, ...(message.error === undefined ? {} : { error: message.error }) });
  }

  private onClose(peer: Peer): void {
    this.peers.delete(peer);
    if (peer.claimTimer !== undefined) clearTimeout(peer.claimTimer);
    if (peer.badMessages > LOGGED_BAD_MESSAGES) {
      this.pool.logger.warn({ job_id: peer.job, count: peer.badMessages }, "session channel: connection closed after sending malformed messages (all dropped)");
    }
    this.release(peer);
    if (peer.session === undefined || peer.ended) return;
    peer.session.end({ status: "failed", error: "job process exited while the call was live" });
  }

  private release(peer: Peer): void {
    if (peer.job !== undefined && this.claims.get(peer.job) === peer) this.claims.delete(peer.job);
  }

  /** Undefined when the token proves the job (or no secret is known); otherwise what failed. */
  private jobTokenProblem(session: Session, token: string | undefined): string | undefined {
    if (this.jobTokenSecret === undefined) return undefined;
    const jobId = session.info.jobId;
    const identity = this.identities.get(session);
    const checked = verifyJobToken(token, { secret: this.jobTokenSecret, roomName: session.info.roomName, ...(identity === undefined ? {} : { identity }) });
    if (!checked.ok) return checked.problem;
    if (identity === undefined) {
      // The accepted identity is unknown: hold `sub` to agents-js' default. A token issued for
      // another live job's default identity (two jobs in one room) is that job's, not this one's.
      const sub = checked.claims.sub;
      const prefix = defaultAgentIdentity("");
      if (sub !== defaultAgentIdentity(jobId) && sub.startsWith(prefix)) {
        const other = this.pool.session(sub.slice(prefix.length));
        if (other !== undefined && other !== session) return "job token is for another job's participant identity";
      }
    }
    return undefined;
  }

  private keyMatches(presented: string | undefined): boolean {
    if (presented === undefined || presented.length !== 64 || !/^[0-9a-f]{64}$/.test(presented)) return false;
    return timingSafeEqual(Buffer.from(presented, "hex"), this.key);
  }

  private refuse(peer: Peer, job: string, reason: ChannelRefusal, message: string): void {
    this.reply(peer, { t: "refused", job, reason, message });
    peer.socket.end();
  }

  private reply(peer: Peer, reply: ChannelReply): void {
    if (!peer.socket.writable) return;
    peer.socket.write(`${JSON.stringify(reply)}\n`);
  }

  private bad(peer: Peer, problem: string): void {
    peer.badMessages++;
    if (peer.badMessages <= LOGGED_BAD_MESSAGES) {
      this.pool.logger.warn({ job_id: peer.job, problem }, "session channel: malformed message dropped");
    }
  }
}

function warnIfShared(pool: AgentPool, directory: string): void {
  try {
    const mode = statSync(directory).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      pool.logger.warn(
        { directory, mode: mode.toString(8) },
        "session channel: the socket's directory is open to other users; use a directory only the worker's user can enter (0700), or omit socketPath",
      );
    }
  } catch {
    // listen() reports a missing directory itself.
  }
}

export interface ReporterOptions {
  /** How long to wait for the parent's answer to `start`. Default 5 s. */
  replyTimeoutMs?: number;
  /** The channel key (default: `OPENRTC_SESSION_KEY`). */
  key?: string;
  /**
   * This job's LiveKit room-join token (agents-js `ctx.info.token`): the per-job proof the parent
   * checks when it knows the API secret. Sent only on the channel, never logged.
   */
  token?: string;
}

/** The child's side: one connection per job. */
export class SessionReporter {
  private endedValue = false;

  private constructor(
    private readonly socket: Socket,
    private readonly jobId: string,
    /** The parent's answer to `start`: `ok`, a refusal, or undefined when none came in time. */
    readonly reply: ChannelReply | undefined,
  ) {}

  /** True when the parent refused this job: the job must not run (see `refusal`). */
  get refused(): boolean {
    return this.reply?.t === "refused";
  }

  /** Why the parent refused the job, when it did. */
  get refusal(): { reason: ChannelRefusal; message: string } | undefined {
    return this.reply?.t === "refused" ? { reason: this.reply.reason, message: this.reply.message } : undefined;
  }

  /**
   * Connects to the parent and claims the job; resolves to undefined when not running under an
   * OpenRTC parent. Resolves once the parent answered (or `replyTimeoutMs` passed: the call then
   * runs, and the parent still sees the connection).
   */
  static async connect(jobId: string, path = process.env[SESSION_SOCKET_ENV], options: ReporterOptions = {}): Promise<SessionReporter | undefined> {
    if (path === undefined || path === "") return undefined;
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    // A parent that goes away must not crash the job process (and its call) with an EPIPE.
    socket.on("error", () => {});
    socket.setEncoding("utf8");
    const reply = new Promise<ChannelReply | undefined>((resolve) => {
      let buffer = "";
      const timer = setTimeout(() => resolve(undefined), options.replyTimeoutMs ?? 5000);
      timer.unref();
      const done = (value: ChannelReply | undefined) => {
        clearTimeout(timer);
        socket.off("data", onData);
        resolve(value);
      };
      const onData = (chunk: string) => {
        buffer += chunk;
        const newline = buffer.indexOf("\n");
        if (newline === -1) {
          if (buffer.length > MAX_CHANNEL_LINE) done(undefined);
          return;
        }
        done(parseReply(buffer.slice(0, newline), jobId));
      };
      socket.on("data", onData);
      socket.once("close", () => done(undefined));
    });
    const key = options.key ?? process.env[SESSION_KEY_ENV];
    const start: ChannelMessage = { t: "start", job: jobId, pid: process.pid, ...(key === undefined ? {} : { key }) };
    // An oversized token would make the whole line unparseable (no answer, a 5 s wait): send none,
    // and a verifying parent refuses the start at once, saying so.
    const token = options.token;
    if (typeof token === "string" && token !== "" && token.length <= MAX_JOB_TOKEN) start.token = token;
    socket.write(`${JSON.stringify(start)}\n`);
    const reporter = new SessionReporter(socket, jobId, await reply);
    if (reporter.refused) reporter.endedValue = true;
    return reporter;
  }

  end(status: SessionStatus, error?: string): Promise<void> {
    if (this.endedValue || this.socket.destroyed) return Promise.resolve();
    this.endedValue = true;
    const message: ChannelMessage = { t: "end", job: this.jobId, status, ...(error === undefined ? {} : { error }) };
    return new Promise((resolve) => {
      this.socket.end(`${JSON.stringify(message)}\n`, () => resolve());
    });
  }
}

function parseReply(line: string, jobId: string): ChannelReply | undefined {
  try {
    const value = JSON.parse(line) as Partial<ChannelReply> | null;
    if (value === null || typeof value !== "object" || value.job !== jobId) return undefined;
    if (value.t === "ok") return { t: "ok", job: jobId };
    if (value.t === "refused" && typeof value.reason === "string") {
      return { t: "refused", job: jobId, reason: value.reason, message: typeof value.message === "string" ? value.message : value.reason };
    }
  } catch {
    // Not an answer we understand: treated as no answer.
  }
  return undefined;
}
