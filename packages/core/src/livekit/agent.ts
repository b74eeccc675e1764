import type { JobContext } from "@livekit/agents";
import { stderrLogger, type Logger } from "../logger.ts";
import type { SessionInfo, SessionOutcome, SessionStatus } from "../sessions.ts";
import { parseMetadata } from "../tenant.ts";
import { systemClock } from "../clock.ts";
import { notifyObservers, type SessionObserver } from "./observers.ts";
import { SessionReporter } from "./session-channel.ts";

/** Set by the parent for every job process it forks: the worker's deployment_version. */
export const DEPLOYMENT_VERSION_ENV = "OPENRTC_DEPLOYMENT_VERSION";

export interface OpenRTCAgentOptions {
  observers?: readonly SessionObserver[];
  observerTimeoutMs?: number;
  logger?: Logger;
}

interface AgentDefinition {
  entry: (ctx: JobContext) => Promise<void>;
  [key: string | symbol]: unknown;
}

interface JobState {
  info: SessionInfo;
  agentSession: unknown;
  started: Promise<void> | undefined;
  observers: readonly SessionObserver[];
  timeoutMs: number;
  logger: Logger;
}

const jobs = new WeakMap<object, JobState>();

/** The session info for the job this context runs, as the parent pool sees it. */
export function sessionInfo(ctx: JobContext): SessionInfo | undefined {
  return jobs.get(ctx)?.info;
}

/**
 * Hands the live `AgentSession` to the observers (`onSessionStart(info, session)`). Call it once
 * the session exists; observers that were not given one see `null` when the job ends.
 */
export function observeSession(ctx: JobContext, agentSession: unknown): Promise<void> {
  const state = jobs.get(ctx);
  if (state === undefined || state.started !== undefined) return state?.started ?? Promise.resolve();
  state.agentSession = agentSession;
  state.started = notifyObservers(state.observers, (o) => o.onSessionStart?.(state.info, agentSession), state.logger, state.timeoutMs);
  return state.started;
}

/** `ctx.info.token` (agents-js `RunningJobInfo.token`), when this context has one. */
function jobTokenOption(ctx: JobContext): { token?: string } {
  try {
    const token = (ctx as { info?: { token?: unknown } }).info?.token;
    return typeof token === "string" && token !== "" ? { token } : {};
  } catch {
    return {};
  }
}

/**
 * Wraps an agent definition (`defineAgent({ entry })`) so its job reports to the parent's pool
 * and its observers see each session. The agent code itself stays ordinary `@livekit/agents`.
 */
export function openrtcAgent<A extends AgentDefinition>(agent: A, options: OpenRTCAgentOptions = {}): A {
  const userEntry = agent.entry;
  const observers = options.observers ?? [];
  const logger = options.logger ?? stderrLogger;
  const timeoutMs = options.observerTimeoutMs ?? 2000;
  const entry = async (ctx: JobContext): Promise<void> => {
    const job = ctx.job;
    let parsed;
    try {
      // "label" here whatever the parent's policy: a job that got this far was admitted, and its
      // observers should see it as the parent counts it under "label" (tenant "invalid").
      parsed = parseMetadata(job.metadata, { tenantPolicy: "label" });
    } catch {
      parsed = parseMetadata(undefined);
    }
    const info: SessionInfo = {
      jobId: job.id,
      agentName: job.agentName,
      roomName: job.room?.name ?? "",
      deploymentVersion: process.env[DEPLOYMENT_VERSION_ENV] || null,
      tenant: parsed.tenant,
      metadata: parsed.metadata,
      startedAt: systemClock(),
      ...(parsed.invalidTenant === undefined ? {} : { invalidTenant: parsed.invalidTenant }),
    };
    const state: JobState = { info, agentSession: null, started: undefined, observers, timeoutMs, logger };
    jobs.set(ctx, state);
    let reporter: SessionReporter | undefined;
    try {
      // The assignment's room-join token is this job's own proof to the parent (see session-channel.ts).
      reporter = await SessionReporter.connect(job.id, undefined, { ...jobTokenOption(ctx) });
    } catch (error) {
      logger.error({ job_id: job.id, err: String(error) }, "could not reach the parent's session channel; the call runs but the parent cannot see it end");
    }
    const refusal = reporter?.refusal;
    if (refusal !== undefined) {
      // The parent does not count this job (e.g. its launch timeout already ended the session as
      // cancelled, and LiveKit was told so): running it would be a call nobody tracks or drains.
      jobs.delete(ctx);
      const reason = `openrtc: the worker refused this job process (${refusal.reason}): ${refusal.message}`;
      logger.error({ job_id: job.id, reason: refusal.reason }, "the parent refused this job; shutting the job down instead of running it untracked");
      ctx.shutdown(reason);
      return;
    }
    let status: SessionStatus = "success";
    let failure: string | undefined;
    ctx.addShutdownCallback(async () => {
      if (state.started === undefined) state.started = notifyObservers(observers, (o) => o.onSessionStart?.(info, null), logger, timeoutMs);
      await state.started;
      const endedAt = systemClock();
      const outcome: SessionOutcome = {
        status,
        endedAt,
        durationSeconds: Math.max(0, endedAt - info.startedAt),
        ...(failure === undefined ? {} : { error: failure }),
      };
      await notifyObservers(observers, (o) => o.onSessionEnd?.(info, outcome), logger, timeoutMs);
      await reporter?.end(status, failure);
    });
    try {
      await userEntry(ctx);
    } catch (error) {
      status = "failed";
      failure = error instanceof Error ? error.message : String(error);
      throw error;
    }
  };
  // Keep the definition's identity markers (defineAgent's symbol) and other fields.
  const wrapped = Object.create(Object.getPrototypeOf(agent) as object | null) as A;
  for (const key of Reflect.ownKeys(agent)) {
    const descriptor = Object.getOwnPropertyDescriptor(agent, key);
    if (descriptor !== undefined) Object.defineProperty(wrapped, key, descriptor);
  }
  Object.defineProperty(wrapped, "entry", { value: entry, enumerable: true, writable: true, configurable: true });
  return wrapped;
}
