/** The contract between `openrtc` (cli.ts) and its subcommands. */

/**
 * What a command may touch. `main` gets it as an argument so tests can run commands in-process
 * and capture output; the real entry point passes the process's.
 */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  /** Standard input, for commands that read `-`. */
  stdin?: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>;
}

/** Exit codes: 0 success, 1 the command ran and found a problem, 2 usage or I/O error. */
export const EXIT_OK = 0;
export const EXIT_PROBLEM = 1;
export const EXIT_USAGE = 2;

/** Thrown by a command for bad arguments or unreadable input: printed, exit 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export interface CliCommand {
  /** One line for `openrtc --help`. */
  summary: string;
  /** Full usage text for `openrtc <command> --help` and usage errors. */
  usage: string;
  /** `args` are what follows the command name. Resolves to the exit code. */
  run(args: string[], io: CliIo): Promise<number>;
}

