import { SpanStatusCode, trace, type Span, type Tracer } from "@opentelemetry/api";
import type { SessionInfo, SessionOutcome } from "./sessions.ts";

export const SESSION_SPAN_NAME = "openrtc.session";
export const TRACER_NAME = "@openrtc/core";

export const SessionAttributes = {
  deploymentVersion: "openrtc.deployment_version",
  tenant: "openrtc.tenant",
  agentName: "openrtc.agent_name",
  jobId: "livekit.job.id",
  roomName: "livekit.room.name",
  status: "openrtc.session.status",
} as const;

/**
 * One span per session through `@opentelemetry/api` only: with no SDK installed the API hands
 * out non-recording spans, so this costs next to nothing until an app configures tracing.
 */
export class SessionTracer {
  private readonly tracer: Tracer;

  constructor(tracer?: Tracer) {
    this.tracer = tracer ?? trace.getTracer(TRACER_NAME);
  }

  start(info: SessionInfo): Span {
    return this.tracer.startSpan(SESSION_SPAN_NAME, {
      startTime: info.startedAt * 1000,
      attributes: {
        [SessionAttributes.deploymentVersion]: info.deploymentVersion ?? "",
        [SessionAttributes.tenant]: info.tenant,
        [SessionAttributes.agentName]: info.agentName,
        [SessionAttributes.jobId]: info.jobId,
        [SessionAttributes.roomName]: info.roomName,
      },
    });
  }

  drainBegan(span: Span, at: number, actor: string, reason: string | undefined): void {
    span.addEvent("openrtc.drain_started", { "openrtc.drain.actor": actor, "openrtc.drain.reason": reason ?? "" }, at * 1000);
  }

  end(span: Span, outcome: SessionOutcome): void {
    span.setAttribute(SessionAttributes.status, outcome.status);
    // success → OK, failed → ERROR; a cancelled call is neither (left UNSET, the attribute says it).
    if (outcome.status === "success") span.setStatus({ code: SpanStatusCode.OK });
    else if (outcome.status === "failed") span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error ?? "session failed" });
    span.end(outcome.endedAt * 1000);
  }
}
