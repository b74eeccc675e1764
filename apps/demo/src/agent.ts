// The demo's voice agent. It holds the call exactly as the dispatcher package's hold-call agent
// does (until its job is shut down: the caller hanging up closes the room, and LiveKit ends the
// job), and meanwhile talks: a real `voice.AgentSession` with provider doubles and no media
// (src/conversation.ts), watched by a `VoiceGatewayObserver` that ships each call's record to
// the coordinator's collector (OPENRTC_OBSERVER_COLLECTOR_URL, set for every worker and
// inherited by its job processes). The version named in OPENRTC_DEMO_REGRESSION (v2.0.0) has
// slower TTS and fails more calls (src/regression.ts). Wrapped by `openrtcAgent`, so its job
// reports to the worker's pool and the observers see every call. Against a real LiveKit server
// (OPENRTC_DEMO_CONNECT=1) the agent joins the room first, so the caller can see it answer.
import { defineAgent, type JobContext } from "@livekit/agents";
import holdCallAgent from "@openrtc/livekit-dispatcher/hold-call-agent";
import { stderrLogger } from "@openrtc/core";
import { DEPLOYMENT_VERSION_ENV, observeSession, openrtcAgent, sessionInfo } from "@openrtc/core/livekit";
import { VoiceGatewayObserver } from "@openrtc/observer-voicegateway";
import { converseSafely, createSession, FailedCallsObserver } from "./conversation.ts";
import { decodeRegression, planCall, REGRESSION_ENV } from "./regression.ts";

const regression = decodeRegression(process.env[REGRESSION_ENV]);
const observer = new FailedCallsObserver(new VoiceGatewayObserver({ project: "openrtc-demo" }));

/** The call's index from its job metadata (`{"tenant":…,"call":N}`), else a hash of the job id. */
function callIndexOf(ctx: JobContext): number {
  try {
    const call = (JSON.parse(ctx.job.metadata || "{}") as { call?: unknown }).call;
    if (typeof call === "number" && Number.isSafeInteger(call) && call >= 0) return call;
  } catch {
    // not JSON: fall through
  }
  let h = 0;
  for (const ch of ctx.job.id) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return h;
}

let warned = false;

async function talk(ctx: JobContext): Promise<void> {
  const version = sessionInfo(ctx)?.deploymentVersion ?? (process.env[DEPLOYMENT_VERSION_ENV] || null);
  const plan = planCall(regression, version, callIndexOf(ctx));
  const session = createSession(plan);
  await observeSession(ctx, session);
  await converseSafely(session, plan, 10_000, (error) => {
    if (warned) return;
    warned = true;
    stderrLogger.warn({ job_id: ctx.job.id, err: error instanceof Error ? error.message : String(error) }, "demo agent: the conversation failed; the call is held regardless");
  });
}

// defineAgent marks the definition with a non-enumerable symbol the SDK checks: build a new
// definition rather than spreading the hold-call agent's (a spread drops the mark).
const agent = defineAgent({
  entry: async (ctx: JobContext) => {
    if (process.env.OPENRTC_DEMO_CONNECT === "1") await ctx.connect();
    // The hold starts first: before its first await it has noted the agent's presence and is
    // listening for the parent's shutdownRequest (the caller's hang-up), so a short call's
    // hang-up is never missed while the conversation runs.
    const hold = holdCallAgent.entry(ctx);
    const conversation = talk(ctx).catch(() => undefined);
    await hold;
    // The SDK ends the session (and the observers see the call end) once the entry returns: let
    // the conversation finish first (it is bounded), so the record holds all of its metrics.
    await conversation;
  },
});

// (openrtcAgent's parameter type has an index signature that the SDK's AgentDefinition lacks.)
export default openrtcAgent(agent as typeof agent & Record<string | symbol, unknown>, { observers: [observer] });
