export { bindAgentPool, createAgentServer } from "./server.ts";
export type { AttachOptions, OpenRTCBinding } from "./server.ts";
export { DEPLOYMENT_VERSION_ENV, observeSession, openrtcAgent, sessionInfo } from "./agent.ts";
export type { OpenRTCAgentOptions } from "./agent.ts";
export { DEFAULT_OBSERVER_TIMEOUT_MS, notifyObservers } from "./observers.ts";
export type { SessionObserver } from "./observers.ts";
export { SESSION_SOCKET_ENV, SessionChannel, SessionReporter } from "./session-channel.ts";
