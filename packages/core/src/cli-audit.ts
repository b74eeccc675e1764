import { parseArgs } from "node:util";
import { listAuditFiles, readAuditFiles } from "./audit-files.ts";
import { AuditVerifier } from "./audit-verify.ts";
import type { AuditVerifyOptions, AuditVerifyResult } from "./audit-verify.ts";
import { EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError } from "./cli-command.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";

const VERIFY_USAGE = `Usage: openrtc audit verify FILE [--json] [--partial]

Checks an audit log's hash chains: every record's hash, seq continuity and prev_hash links,
per origin. FILE is the log's (active) file; its rotated siblings (FILE stem.NNNNNNNN.jsonl)
are read first, in order. FILE may also be a directory holding one log.

  --json      print the result as one JSON object
  --partial   the log may start mid-chain (e.g. older rotated files were pruned): the first
              record of each origin is taken on trust instead of having to be seq 1

Exit status: 0 intact, 1 a bad line (its file, line number, seq and fault kind are printed),
2 usage error or unreadable log.
`;

const AUDIT_USAGE = `Usage: openrtc audit <subcommand>

Subcommands:
  verify FILE   check a JSONL audit log's hash chains (see \`openrtc audit verify --help\`)
`;

const auditSubcommands: Record<string, CliCommand> = {
  verify: { summary: "check a JSONL audit log's hash chains", usage: VERIFY_USAGE, run: runVerify },
};

export const auditCommand: CliCommand = {
  summary: "audit log tools (verify)",
  usage: AUDIT_USAGE,
  async run(args, io) {
    const [name, ...rest] = args;
    if (name === "--help" || name === "-h") {
      io.stdout(AUDIT_USAGE);
      return EXIT_OK;
    }
    const sub = name !== undefined && Object.hasOwn(auditSubcommands, name) ? auditSubcommands[name] : undefined;
    if (!sub) {
      io.stderr(`${name === undefined ? "openrtc audit: missing subcommand" : `openrtc audit: unknown subcommand "${name}"`}\n\n${AUDIT_USAGE}`);
      return EXIT_USAGE;
    }
    return sub.run(rest, io);
  },
};

async function runVerify(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        json: { type: "boolean", default: false },
        partial: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new UsageError(`verify: ${(error as Error).message}\n\n${VERIFY_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(VERIFY_USAGE);
    return EXIT_OK;
  }
  if (positionals.length !== 1) {
    throw new UsageError(`verify: expected exactly one FILE, got ${positionals.length}\n\n${VERIFY_USAGE}`);
  }
  const path = positionals[0] as string;
  const options: AuditVerifyOptions = { partial: values.partial };

  let files: string[];
  try {
    files = await listAuditFiles(path);
  } catch (error) {
    throw new UsageError(`verify: cannot read ${path}: ${describeIoError(error)}`);
  }
  const verifier = new AuditVerifier(options);
  try {
    for await (const { file, lineNo, line } of readAuditFiles(path)) {
      if (!verifier.push(line, { file, line: lineNo })) break;
    }
  } catch (error) {
    throw new UsageError(`verify: cannot read ${path}: ${describeIoError(error)}`);
  }
  const result = verifier.finish();
  io.stdout(values.json ? `${JSON.stringify({ ...result, files })}\n` : summary(result, files));
  return result.ok ? EXIT_OK : EXIT_PROBLEM;
}

function summary(result: AuditVerifyResult, files: readonly string[]): string {
  const where = files.length === 1 ? (files[0] as string) : `${files.length} files (${files[0]} … ${files[files.length - 1]})`;
  if (result.ok) {
    return `OK: ${result.records} records, ${result.origins} ${result.origins === 1 ? "origin" : "origins"}, chains intact in ${where}\n`;
  }
  const seq = result.seq === null ? "no seq" : `seq ${result.seq}`;
  return `FAILED: ${result.fault} at line ${result.line}${result.file === undefined ? "" : ` of ${result.file}`} (${seq})\n  ${result.message}\n`;
}

function describeIoError(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  switch (e?.code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    default:
      return e instanceof Error ? e.message : String(error);
  }
}
