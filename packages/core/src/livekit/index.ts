export { bindAgentPool, createAgentServer } from "./server.ts";
export type { AttachOptions, OpenRTCBinding, ServerOptionsInit } from "./server.ts";
export { runApp, START_FAILED_EXIT_CODE, USAGE_EXIT_CODE } from "./run-app.ts";
export type { RunAppOptions, RunningApp } from "./run-app.ts";
export { parseCommand, UsageError, LOG_LEVELS } from "./cli-args.ts";
export type { LogLevel, ParsedCommand, WorkerCommand } from "./cli-args.ts";
export { DEPLOYMENT_VERSION_ATTRIBUTE, InvalidDeploymentError, resolveLivekitDeployment, validateLivekitDeployment } from "./deployment.ts";
export type { DeploymentRoutingOptions } from "./deployment.ts";
export { sdkSurfaceProblems, TESTED_AGENTS_RANGE } from "./sdk.ts";
export { DEPLOYMENT_VERSION_ENV, observeSession, openrtcAgent, sessionInfo } from "./agent.ts";
export type { OpenRTCAgentOptions } from "./agent.ts";
export { DEFAULT_OBSERVER_TIMEOUT_MS, notifyObservers } from "./observers.ts";
export type { SessionObserver } from "./observers.ts";
export { MAX_CHANNEL_LINE, parseChannelMessage, SESSION_KEY_ENV, SESSION_SOCKET_ENV, SessionChannel, SessionReporter } from "./session-channel.ts";
export type {
  ChannelMessage,
  ChannelRefusal,
  ChannelReply,
  LaunchExpectation,
  ParsedChannelMessage,
  ReporterOptions,
  SessionChannelOptions,
} from "./session-channel.ts";
export { defaultAgentIdentity, JOB_TOKEN_SKEW_SECONDS, MAX_JOB_TOKEN, verifyJobToken } from "./job-token.ts";
export type { JobTokenCheck, JobTokenClaims, JobTokenExpectation } from "./job-token.ts";
