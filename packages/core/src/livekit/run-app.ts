import { AgentServer, cli, initializeLogger, ServerOptions } from "@livekit/agents";
import type { AgentPool } from "../pool.ts";
import { attachProcessLifecycle, type ProcessLifecycle, type ProcessLifecycleOptions } from "../lifecycle.ts";
import { parseCommand, USAGE, UsageError, type WorkerCommand } from "./cli-args.ts";
import { resolveLivekitDeployment } from "./deployment.ts";
import { isSdkChildProcess, loadProtocol, startDevChannel } from "./sdk.ts";
import { createAgentServer, type AttachOptions, type OpenRTCBinding, type ServerOptionsInit } from "./server.ts";

/** Exit code of a worker that could not start (configuration) or whose AgentServer failed. */
export const START_FAILED_EXIT_CODE = 1;
/** Exit code of a command line that could not be parsed. */
export const USAGE_EXIT_CODE = 2;

export interface RunAppOptions extends AttachOptions {
  /** Default `process.argv`. */
  argv?: readonly string[];
  /** Default `process.env` (read for LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, LOG_LEVEL, ...). */
  env?: NodeJS.ProcessEnv;
  /** Exit and shutdown settings; signals always go through the pool's drain. */
  lifecycle?: Omit<ProcessLifecycleOptions, "signals" | "beforeExit">;
}

export interface RunningApp {
  readonly server: AgentServer;
  readonly binding: OpenRTCBinding;
  readonly lifecycle: ProcessLifecycle;
  readonly command: WorkerCommand;
}

/**
 * A drop-in for `cli.runApp(new ServerOptions(init))` that puts the pool in charge: the same
 * commands (`start`, `dev`, `connect`; `console` and `download-files` go to the SDK's CLI), the
 * same flags and environment variables, and one shutdown path.
 *
 * - The worker is ready (`pool.state` serving, `/readyz` 200) as soon as LiveKit registers it.
 * - A SIGTERM or SIGINT at any moment (before registration, mid-assignment, during a call)
 *   drains: LiveKit is told the worker is full at once, no job is accepted after it, every
 *   live call runs to its hang-up, the audit sinks are flushed (with a deadline), the
 *   AgentServer is closed, and the process exits 0. `dev` and `connect` drain the same way.
 * - A second SIGINT exits 130 at once; the calls it dropped are counted and recorded.
 * - A worker that cannot start exits 1 with the reason; a bad command line exits 2.
 * - In `start` the SDK's production defaults hold (load threshold 0.7, idle processes);
 *   the application's own `loadFunc` and `requestFunc` still run.
 *
 * Resolves once the worker runs (or with `undefined` in the SDK's job processes, which import
 * the agent file that often calls this, and for commands handed to the SDK's CLI).
 */
export async function runApp(pool: AgentPool, init: ServerOptions | ServerOptionsInit, options: RunAppOptions = {}): Promise<RunningApp | undefined> {
  if (isSdkChildProcess()) return undefined;
  const { argv = process.argv, env = process.env, lifecycle: lifecycleOptions, ...attachOptions } = options;
  const exit = lifecycleOptions?.exit ?? ((code: number) => process.exit(code));
  let command;
  try {
    command = parseCommand(argv.slice(2), env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n\n${USAGE}`);
    exit(USAGE_EXIT_CODE);
    return undefined;
  }
  if (command.kind === "help") {
    process.stdout.write(command.text);
    exit(0);
    return undefined;
  }
  if (command.kind === "version" || command.kind === "delegate") {
    cli.runApp(init instanceof ServerOptions ? init : new ServerOptions(init));
    return undefined;
  }

  const opts: ServerOptionsInit = {
    ...withoutDevelopmentDefaults(init),
    wsURL: command.url ?? init.wsURL,
    apiKey: command.apiKey ?? init.apiKey,
    apiSecret: command.apiSecret ?? init.apiSecret,
    workerToken: command.workerToken ?? init.workerToken,
    logLevel: command.logLevel,
    production: command.production,
    simulation: command.simulation || init.simulation === true,
  };
  // Configuration is checked before anything starts, so a mistake exits at once with the
  // reason instead of as a worker LiveKit refuses (or that silently gets no jobs).
  const problem = configurationProblem(pool, opts, attachOptions);
  if (problem !== undefined) {
    process.stderr.write(`openrtc: cannot start the worker: ${problem}\n`);
    exit(START_FAILED_EXIT_CODE);
    return undefined;
  }
  initializeLogger({ pretty: !command.production, level: command.logLevel });
  if (!command.production) process.env.LIVEKIT_DEV_MODE = "1";

  // Signals are the pool's from here on: a SIGTERM while the binding or the SDK is still
  // starting drains too (there is nothing live yet, so the process exits at once).
  let server: AgentServer | undefined;
  let binding: OpenRTCBinding | undefined;
  let running: Promise<void> | undefined;
  let devChannel: { close(): void } | undefined;
  let resolveStarted!: () => void;
  const started = new Promise<void>((resolve) => (resolveStarted = resolve));
  const lifecycle = attachProcessLifecycle(pool, {
    ...lifecycleOptions,
    beforeExit: async () => {
      await started;
      devChannel?.close();
      // close() on a server that never ran would wait forever for its run to finish.
      if (server !== undefined && running !== undefined) await server.close();
      await binding?.close();
    },
  });
  const fail = (what: string, error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    pool.logger.error({ err: message }, `${what}; draining, then exiting ${START_FAILED_EXIT_CODE}`);
    lifecycle.setExitCode(START_FAILED_EXIT_CODE);
    pool.beginDrain({ actor: "openrtc:runApp", reason: `${what}: ${message}` });
  };

  try {
    ({ server, binding } = await createAgentServer(pool, opts, attachOptions));
  } catch (error) {
    resolveStarted();
    fail("the worker could not start", error);
    return undefined;
  }
  if (pool.draining || pool.state === "closed") {
    // Signalled while starting: nothing was ever offered to this worker.
    resolveStarted();
    return undefined;
  }
  const registered = server;
  if (command.room !== undefined) {
    const { room, participantIdentity } = command;
    registered.event.once("worker_registered", () => {
      registered.simulateJob(room, participantIdentity).catch((error: unknown) => pool.logger.error({ err: String(error), room }, "could not join the room given to connect"));
    });
  }
  if (command.cliAddr !== undefined) {
    devChannel = startDevChannel(loadProtocol(), command.cliAddr, binding.options.agentName, binding.options.wsURL, (msg) => pool.logger.warn({}, msg));
  }
  running = registered.run().catch((error: unknown) => {
    // Lost LiveKit for good (the SDK gave up reconnecting): calls already in their job
    // processes keep running; drain them, then exit non-zero so the platform restarts us.
    if (pool.state !== "closed") fail("the AgentServer stopped", error);
  });
  resolveStarted();
  return { server: registered, binding, lifecycle, command };
}

function configurationProblem(pool: AgentPool, opts: ServerOptionsInit, attachOptions: AttachOptions): string | undefined {
  if (!opts.agent) return "no agent file: pass ServerOptions({ agent: fileURLToPath(import.meta.url) })";
  // The SDK's own checks (AgentServer constructor), made before the pool is touched; the
  // environment fallbacks are already in `opts` (parseCommand).
  if (!opts.wsURL) return "URL is required: set LIVEKIT_URL, run with --url, or pass wsURL in ServerOptions";
  if (!opts.apiKey) return "API key is required: set LIVEKIT_API_KEY, run with --api-key, or pass apiKey in ServerOptions";
  if (!opts.apiSecret) return "API secret is required: set LIVEKIT_API_SECRET, run with --api-secret, or pass apiSecret in ServerOptions";
  try {
    resolveLivekitDeployment(pool.deploymentVersion, attachOptions);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  return undefined;
}

/**
 * A `ServerOptions` built without `production` already holds the development load threshold
 * (Infinity); spread into production options it would switch the SDK's overload protection
 * off, as it does under agents-js' own `cli.runApp`. Drop it so production's 0.7 applies; an
 * explicit threshold, or a plain object, is kept as given.
 */
function withoutDevelopmentDefaults(init: ServerOptions | ServerOptionsInit): ServerOptionsInit {
  if (!(init instanceof ServerOptions) || init.production || init.simulation || init.loadThreshold !== Infinity) return init;
  const { loadThreshold: _developmentDefault, ...rest } = init;
  return rest;
}
