// The demo's voice agent: the dispatcher package's hold-call agent (it holds the call until its
// job is shut down: the caller hanging up closes the room, and LiveKit ends the job), wrapped so
// its job reports to the worker's pool and session observers see every call. A real app wraps
// its own `defineAgent({ entry })` the same way. Against a real LiveKit server
// (OPENRTC_DEMO_CONNECT=1) the agent joins the room first, so the caller can see it answer.
import holdCallAgent from "@openrtc/livekit-dispatcher/hold-call-agent";
import { openrtcAgent } from "@openrtc/core/livekit";

const agent =
  process.env.OPENRTC_DEMO_CONNECT === "1"
    ? {
        ...holdCallAgent,
        entry: async (ctx: Parameters<typeof holdCallAgent.entry>[0]) => {
          await ctx.connect();
          await holdCallAgent.entry(ctx);
        },
      }
    : holdCallAgent;

export default openrtcAgent(agent);
