import { readFile, rename, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { listAuditFiles, readAuditFiles, splitLines } from "./audit/files.ts";
import { describeError, describeIoError } from "./audit/errors.ts";
import { CheckpointKeys } from "./audit/checkpoint.ts";
import { AuditVerifier } from "./audit/verify.ts";
import type { AuditVerifyOptions, AuditVerifyResult } from "./audit/verify.ts";
import { EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError } from "./cli-command.ts";
import { importAuditSinksS3 } from "./optional-peer.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";

const VERIFY_USAGE = `Usage: openrtc audit verify FILE|DIR|s3://BUCKET/PREFIX|- [--json] [--partial]
         [--hmac-secret-env NAME]... [--ed25519-public-key PEMFILE]...
         [--expect-checkpoint JSONFILE]... [--require-signed] [--state FILE]
         [--key-origin KEYID=ORIGIN]...

Checks an audit log's hash chains: every record's hash, seq continuity and prev_hash links,
per origin. FILE is the log's (active) file; its rotated siblings (FILE stem.NNNNNNNN.jsonl)
are read first, in order. FILE may also be a directory holding one log, or - for standard
input (e.g. piped from object storage). An unterminated, incomplete last line of the active
file (a write in progress) is ignored and mentioned.

  s3://BUCKET/PREFIX   objects written by @openrtc/audit-sinks/s3 (install it and @aws-sdk/client-s3;
              credentials and region from the usual AWS settings; --endpoint URL for S3-compatible stores)
  --json      print the result as one JSON object
  --partial   the log may start mid-chain (e.g. older rotated files were pruned): the first
              record of each origin is taken on trust instead of having to be seq 1
  --hmac-secret-env NAME
              check checkpoint HMACs with the secret in environment variable NAME
              (repeat for each secret while rotating; secrets are never printed)
  --ed25519-public-key PEMFILE
              check checkpoint Ed25519 signatures with this public key (repeatable)
  --expect-checkpoint JSONFILE
              a checkpoint kept apart from the log (a checkpoint record, or
              {"origin","size","head"}; one per line for several origins): the log must still
              reach it with the same hash, so a cut tail or rewritten history is caught
  --require-signed
              every origin must have at least one checkpoint that verifies (and the log must
              hold records: an empty log fails)
  --key-origin KEYID=ORIGIN
              the key with this id may sign only this origin (a trailing * matches a prefix);
              repeatable; once given, a key not named signs nothing
  --state FILE
              remember, per origin, the highest verified checkpoint (or, without keys, the last
              record) in FILE, and check every later log against it: a log that is shorter,
              forked or rewritten since, or that lost an origin, fails (created if missing;
              updated only when the log verifies)

Every line must be byte for byte the canonical JSON of its record; lines over 1 MiB and
records nested too deep fail as malformed (exit 1), never crash the check.

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
        "hmac-secret-env": { type: "string", multiple: true },
        "ed25519-public-key": { type: "string", multiple: true },
        "expect-checkpoint": { type: "string", multiple: true },
        "require-signed": { type: "boolean", default: false },
        "key-origin": { type: "string", multiple: true },
        state: { type: "string" },
        endpoint: { type: "string" },
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
  const options: AuditVerifyOptions = { partial: values.partial, requireSigned: values["require-signed"] };
  const secretEnvs = values["hmac-secret-env"] ?? [];
  if (secretEnvs.length > 0) {
    options.hmacSecrets = secretEnvs.map((name) => {
      const secret = io.env[name];
      if (!secret) throw new UsageError(`verify: environment variable ${name} (--hmac-secret-env) is not set or empty`);
      return secret;
    });
  }
  const keyFiles = values["ed25519-public-key"] ?? [];
  if (keyFiles.length > 0) {
    options.ed25519PublicKeys = await Promise.all(
      keyFiles.map(async (f) => {
        const pem = await readText(f, "--ed25519-public-key");
        try {
          new CheckpointKeys(undefined, [pem]);
        } catch (error) {
          throw new UsageError(`verify: ${f} (--ed25519-public-key): ${(error as Error).message.replace(/^verifyAuditLog: /, "")}`);
        }
        return pem;
      }),
    );
  }
  const expected: Record<string, unknown>[] = [];
  for (const f of values["expect-checkpoint"] ?? []) {
    for (const line of (await readText(f, "--expect-checkpoint")).split("\n")) {
      if (line.trim() === "") continue;
      try {
        expected.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        throw new UsageError(`verify: ${f} (--expect-checkpoint) is not JSON: expected a checkpoint record or {"origin","size","head"} per line`);
      }
    }
  }
  const statePath = values.state;
  const state = statePath === undefined ? undefined : await readState(statePath);
  if (state) for (const [origin, cp] of Object.entries(state.origins)) expected.push({ origin, size: cp.size, head: cp.head });
  if (expected.length > 0) options.expectCheckpoint = expected;
  const bindings = values["key-origin"] ?? [];
  if (bindings.length > 0) {
    const keyOrigins: Record<string, string[]> = {};
    for (const b of bindings) {
      const eq = b.indexOf("=");
      if (eq <= 0 || eq === b.length - 1) throw new UsageError(`verify: --key-origin expects KEYID=ORIGIN, got ${JSON.stringify(b)}`);
      (keyOrigins[b.slice(0, eq)] ??= []).push(b.slice(eq + 1));
    }
    options.keyOrigins = keyOrigins;
  }
  if (options.requireSigned && !options.hmacSecrets && !options.ed25519PublicKeys) {
    throw new UsageError("verify: --require-signed needs --hmac-secret-env or --ed25519-public-key to check signatures with");
  }

  if (path === "-") return verifyStdin(options, io, values.json, statePath, state);
  if (path.startsWith("s3://")) return verifyS3(path, options, io, values.json, values.endpoint);
  let files: string[];
  try {
    files = await listAuditFiles(path);
  } catch (error) {
    throw new UsageError(`verify: cannot read ${path}: ${describeIoError(error)}`);
  }
  let tornTail: { file: string; line: number } | undefined;
  const verifier = newVerifier(options);
  try {
    const activeFile = files[files.length - 1];
    for await (const { file, lineNo, line, bytes, terminated } of readAuditFiles(path)) {
      if (!terminated && file === activeFile && !isJson(line)) {
        // A writer mid-append (or a crash mid-write) leaves a partial last line: not a record yet.
        tornTail = { file, line: lineNo };
        break;
      }
      if (!verifier.push(bytes, { file, line: lineNo })) break;
    }
  } catch (error) {
    throw new UsageError(`verify: cannot read ${path}: ${describeIoError(error)}`);
  }
  const result = verifier.finish();
  if (result.ok && statePath !== undefined) await writeState(statePath, state, result);
  if (values.json) {
    io.stdout(`${JSON.stringify({ ...result, files, ...(tornTail ? { ignoredPartialLine: tornTail } : {}) })}\n`);
  } else {
    io.stdout(summary(result, files));
    if (tornTail) io.stdout(`note: ignored the unterminated, incomplete last line ${tornTail.line} of ${tornTail.file} (a write in progress or a torn tail)\n`);
  }
  return result.ok ? EXIT_OK : EXIT_PROBLEM;
}

interface S3Verifier {
  verifyS3AuditLog(url: string, options: AuditVerifyOptions & { endpoint?: string }): Promise<AuditVerifyResult>;
}

/** `s3://bucket/prefix`: read through @openrtc/audit-sinks/s3, an optional peer (it depends on core). */
async function verifyS3(url: string, options: AuditVerifyOptions, io: CliIo, json: boolean, endpoint: string | undefined): Promise<number> {
  let s3: S3Verifier;
  try {
    s3 = await importAuditSinksS3<S3Verifier>();
  } catch (error) {
    throw new UsageError(
      `verify: reading ${url} needs @openrtc/audit-sinks and @aws-sdk/client-s3 installed beside @openrtc/core (npm install @openrtc/audit-sinks @aws-sdk/client-s3): ${(error as Error).message}`,
    );
  }
  let result: AuditVerifyResult;
  try {
    result = await s3.verifyS3AuditLog(url, { ...options, ...(endpoint === undefined ? {} : { endpoint }) });
  } catch (error) {
    throw new UsageError(`verify: cannot read ${url}: ${(error as Error).message}`);
  }
  if (result.ok && result.records === 0) throw new UsageError(`verify: no audit records under ${url}; check the bucket and prefix`);
  io.stdout(json ? `${JSON.stringify({ ...result, files: [url] })}\n` : summary(result, [url]));
  return result.ok ? EXIT_OK : EXIT_PROBLEM;
}

/** Bad keys or checkpoints in the options are the caller's usage error. */
function newVerifier(options: AuditVerifyOptions): AuditVerifier {
  try {
    return new AuditVerifier(options);
  } catch (error) {
    throw new UsageError(`verify: ${(error as Error).message}`);
  }
}

async function verifyStdin(options: AuditVerifyOptions, io: CliIo, json: boolean, statePath: string | undefined, state: VerifyState | undefined): Promise<number> {
  if (!io.stdin) throw new UsageError("verify: no standard input to read (-)");
  const verifier = newVerifier(options);
  try {
    // Bytes, not decoded text: invalid UTF-8 must reach the verifier as it is.
    for await (const { bytes } of splitLines(io.stdin as AsyncIterable<Uint8Array | string>)) if (!verifier.push(bytes)) break;
  } catch (error) {
    throw new UsageError(`verify: cannot read standard input: ${describeIoError(error)}`);
  }
  const result = verifier.finish();
  if (result.ok && statePath !== undefined) await writeState(statePath, state, result);
  io.stdout(json ? `${JSON.stringify({ ...result, files: ["-"] })}\n` : summary(result, ["standard input"]));
  return result.ok ? EXIT_OK : EXIT_PROBLEM;
}

function summary(result: AuditVerifyResult, files: readonly string[]): string {
  const where = files.length === 1 ? (files[0] as string) : `${files.length} files (${files[0]} … ${files[files.length - 1]})`;
  if (result.ok) {
    return `OK: ${result.records} records, ${result.origins} ${result.origins === 1 ? "origin" : "origins"}, chains intact in ${where}\n${coverage(result.chains)}`;
  }
  const seq = result.seq === null ? "no seq" : `seq ${result.seq}`;
  const covered = result.chains === undefined ? "" : coverage(result.chains);
  return `FAILED: ${result.fault} at line ${result.line}${result.file === undefined ? "" : ` of ${result.file}`} (${seq})\n  ${result.message}\n${covered}`;
}

/** Exactly what the signatures vouch for, per origin, and what is only hash-chained. */
function coverage(chains: readonly import("./audit/verify.ts").AuditChainSummary[]): string {
  return chains
    .map((c) => {
      const cp = c.signedCheckpoint;
      const signed = cp === null
        ? "no verified checkpoint: only hash-chained (anyone who can write the file can rewrite it)"
        : `signed 1..${cp.size} by the checkpoint at seq ${cp.seq} (${new Date(cp.time * 1000).toISOString()})${c.lastSeq > cp.size ? `; ${cp.size + 1}..${c.lastSeq} only hash-chained` : ""}`;
      return `  ${c.origin}: seq ${c.firstSeq}..${c.lastSeq}, ${signed}\n`;
    })
    .join("");
}

/** `--state`: per origin, the furthest point this verifier has seen vouched for. */
interface VerifyState {
  version: 1;
  origins: Record<string, { size: number; head: string; kind: "checkpoint" | "head"; time?: number }>;
}

async function readState(path: string): Promise<VerifyState | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new UsageError(`verify: cannot read ${path} (--state): ${describeIoError(error)}`);
  }
  try {
    const state = JSON.parse(text) as VerifyState;
    if (state?.version !== 1 || state.origins === null || typeof state.origins !== "object") throw new Error("not a state file");
    return state;
  } catch (error) {
    throw new UsageError(`verify: ${path} (--state) is not an openrtc verify state file (${(error as Error).message}); move it away to start afresh`);
  }
}

/**
 * Keeps the highest point per origin: a signed checkpoint when keys verified one (it binds the
 * writer's key), else the last record seen (still catches a later cut or rewrite). Never moves
 * an origin backwards, and keeps origins this log lacked (a later log must still hold them).
 */
async function writeState(path: string, previous: VerifyState | undefined, result: AuditVerifyResult): Promise<void> {
  const state: VerifyState = { version: 1, origins: { ...previous?.origins } };
  for (const c of result.ok ? result.chains : []) {
    const cp = c.signedCheckpoint;
    const next = cp !== null
      ? { size: cp.size, head: "", kind: "checkpoint" as const, time: cp.time }
      : { size: c.lastSeq, head: c.headHash, kind: "head" as const };
    if (cp !== null) next.head = cp.size === c.lastSeq ? c.headHash : headAt(result, c.origin, cp.size);
    const known = state.origins[c.origin];
    if (next.head !== "" && (known === undefined || next.size >= known.size)) state.origins[c.origin] = next;
  }
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path);
  } catch (error) {
    throw new UsageError(`verify: the log verified, but ${path} (--state) could not be written: ${describeError(error)}`);
  }
}

/** Head hash at a checkpoint's size, which the verifier reports with the checkpoint. */
function headAt(result: AuditVerifyResult, origin: string, size: number): string {
  if (!result.ok) return "";
  const c = result.chains.find((x) => x.origin === origin);
  return c?.signedCheckpoint?.size === size && c.signedCheckpointHead !== undefined ? c.signedCheckpointHead : "";
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

async function readText(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`verify: cannot read ${path} (${flag}): ${describeIoError(error)}`);
  }
}
