#!/usr/bin/env node
import { isMainModule } from "./entry-point.ts";
import { auditCommand } from "./cli-audit.ts";
import { compareCommand } from "./cli-compare.ts";
import { manifestCommand } from "./cli-manifest.ts";
import { topCommand } from "./cli-top.ts";
import { EXIT_OK, EXIT_USAGE, UsageError } from "./cli-command.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";

export { EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError } from "./cli-command.ts";
export type { CliCommand, CliIo } from "./cli-command.ts";

/** Every subcommand, by name. Add a command by adding a line here. */
export const commands: Record<string, CliCommand> = {
  audit: auditCommand,
  compare: compareCommand(),
  fleet: (await import("./fleet-cli.ts")).fleetCommand,
  manifest: manifestCommand,
  top: topCommand,
};

function overview(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: openrtc <command> [args]\n\nCommands:\n${lines.join("\n")}\n\nRun \`openrtc <command> --help\` for a command's options.\n`;
}

/** Runs the CLI and resolves to the exit code; never throws. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr(overview());
    return EXIT_USAGE;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    io.stdout(overview());
    return EXIT_OK;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    io.stderr(`openrtc: unknown command "${name}"\n\n${overview()}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`openrtc ${name}: ${error.message}\n`);
      return EXIT_USAGE;
    }
    io.stderr(`openrtc ${name}: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_USAGE;
  }
}

export function processIo(): CliIo {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    stdin: process.stdin,
  };
}

if (isMainModule(import.meta.url)) {
  // exitCode, not exit(): let stdout drain when piped.
  process.exitCode = await main(process.argv.slice(2), processIo());
}
