declare module "@openrtc/livekit-dispatcher/hold-call-agent" {
  import type { JobContext } from "@livekit/agents";
  const agent: { entry: (ctx: JobContext) => Promise<void>; [key: string | symbol]: unknown };
  export default agent;
}
