// The command line of `cli.runApp` from @livekit/agents 1.9, parsed the same way (commands,
// flags, environment fallbacks, flag > environment > code), so `runApp(pool, init)` is a
// drop-in for a worker's existing scripts, Dockerfiles and unit files.
import { parseArgs } from "node:util";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A worker command: runs an AgentServer. */
export interface WorkerCommand {
  kind: "worker";
  command: "start" | "dev" | "connect";
  /** `start` only: production defaults (load threshold 0.7, idle processes, port 8081). */
  production: boolean;
  url: string | undefined;
  apiKey: string | undefined;
  apiSecret: string | undefined;
  workerToken: string | undefined;
  logLevel: LogLevel;
  simulation: boolean;
  room: string | undefined;
  participantIdentity: string | undefined;
  cliAddr: string | undefined;
}

export type ParsedCommand =
  | WorkerCommand
  | { kind: "help"; text: string }
  | { kind: "version" }
  /** `console`, `download-files`: no AgentServer and no calls, so the SDK's own CLI runs them. */
  | { kind: "delegate"; command: string };

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export const USAGE = `Usage: <worker> [options] <command>

LiveKit agent worker with OpenRTC (drain on SIGTERM, audit, metrics).

Options:
  --url <string>         LiveKit server or Cloud project websocket URL (env: LIVEKIT_URL)
  --api-key <string>     LiveKit API key (env: LIVEKIT_API_KEY)
  --api-secret <string>  LiveKit API secret (env: LIVEKIT_API_SECRET)
  -V, --version          print the @livekit/agents version
  -h, --help             this help

Commands:
  start [--log-level <level>]        run the worker in production mode (default level info)
  dev [--log-level <level>]          run the worker in development mode (default level debug)
  connect --room <name> [--participant-identity <id>] [--log-level <level>]
                                     run a worker and join one room
  console, download-files            handled by @livekit/agents' own CLI

Levels: ${LOG_LEVELS.join(", ")} (env: LOG_LEVEL).
Signals: the first SIGTERM or SIGINT drains (no new calls; live calls run to hang-up), then the
process exits 0; a second SIGINT exits 130 at once, dropping and recording the live calls.
`;

const WORKER_COMMANDS = new Set(["start", "dev", "connect"]);
const DELEGATED_COMMANDS = new Set(["console", "download-files"]);
/** Flags each command accepts beyond the global ones. */
const COMMAND_FLAGS: Record<string, readonly string[]> = {
  start: ["log-level", "simulation"],
  dev: ["log-level", "cli-addr"],
  connect: ["log-level", "room", "participant-identity"],
};
const GLOBAL_FLAGS = new Set(["url", "api-key", "api-secret", "worker-token", "help", "version"]);

/** Parses `argv` (without node and script) the way agents-js' runApp does. */
export function parseCommand(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedCommand {
  const first = args.find((a) => !a.startsWith("-"));
  if (first !== undefined && DELEGATED_COMMANDS.has(first)) return { kind: "delegate", command: first };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: "string" },
        "api-key": { type: "string" },
        "api-secret": { type: "string" },
        "worker-token": { type: "string" },
        "log-level": { type: "string" },
        simulation: { type: "boolean" },
        "cli-addr": { type: "string" },
        room: { type: "string" },
        "participant-identity": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { kind: "help", text: USAGE };
  if (values.version === true) return { kind: "version" };
  const command = positionals[0];
  if (command === undefined) return { kind: "help", text: USAGE };
  if (!WORKER_COMMANDS.has(command)) throw new UsageError(`unknown command ${JSON.stringify(command)}: use start, dev or connect`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[1])} after ${command}`);
  const allowed = new Set([...GLOBAL_FLAGS, ...(COMMAND_FLAGS[command] ?? [])]);
  for (const flag of Object.keys(values)) {
    if (!allowed.has(flag)) throw new UsageError(`--${flag} is not an option of ${command}`);
  }
  const defaultLevel: LogLevel = command === "dev" ? "debug" : "info";
  const logLevel = values["log-level"] ?? nonEmpty(env.LOG_LEVEL) ?? defaultLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level ${JSON.stringify(logLevel)} is not one of ${LOG_LEVELS.join(", ")}`);
  }
  if (command === "connect" && (values.room === undefined || values.room === "")) throw new UsageError("connect needs --room <name>");
  return {
    kind: "worker",
    command: command as WorkerCommand["command"],
    production: command === "start",
    url: nonEmpty(values.url) ?? nonEmpty(env.LIVEKIT_URL),
    apiKey: nonEmpty(values["api-key"]) ?? nonEmpty(env.LIVEKIT_API_KEY),
    apiSecret: nonEmpty(values["api-secret"]) ?? nonEmpty(env.LIVEKIT_API_SECRET),
    workerToken: nonEmpty(values["worker-token"]) ?? nonEmpty(env.LIVEKIT_WORKER_TOKEN),
    logLevel: logLevel as LogLevel,
    simulation: values.simulation === true,
    room: values.room,
    participantIdentity: values["participant-identity"],
    cliAddr: values["cli-addr"],
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}
