// The demo's voice agent: the dispatcher package's hold-call agent (it holds the call for the
// duration in the job metadata, then hangs up by deleting the room, as a LiveKit agent does),
// wrapped so its job reports to the worker's pool and session observers see every call.
// A real app wraps its own `defineAgent({ entry })` the same way.
import holdCallAgent from "@openrtc/livekit-dispatcher/hold-call-agent";
import { openrtcAgent } from "@openrtc/core/livekit";

export default openrtcAgent(holdCallAgent);
