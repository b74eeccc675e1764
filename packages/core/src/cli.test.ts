import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog } from "./audit/log.ts";
import { rotatedAuditFilePath } from "./audit/files.ts";
import { commands, main } from "./cli.ts";
import type { CliIo } from "./cli.ts";
import type { AuditRecord } from "./audit/log.ts";

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
let dir: string;

function makeLines(n: number, origin = "w1"): string[] {
  const log = new AuditLog({ origin, clock: () => 1000, version: "v1" });
  return Array.from({ length: n }, (_, i) => JSON.stringify(log.emit("deployment.started", { i })));
}

async function writeLog(name: string, lines: readonly string[]): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, lines.map((l) => `${l}\n`).join(""));
  return path;
}

async function run(...argv: string[]) {
  return runWithEnv({}, ...argv);
}

async function runWithEnv(env: Record<string, string>, ...argv: string[]) {
  let stdout = "";
  let stderr = "";
  const io: CliIo = { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), env };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** The real thing: `openrtc` as a child process, from source. */
function runChild(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runChildWithEnv({}, ...argv);
}

function runChildWithEnv(env: Record<string, string>, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--conditions=@openrtc/source", "--import", "tsx", "src/cli.ts", ...argv],
      { cwd: packageDir, timeout: 20_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "openrtc-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("openrtc (child process)", () => {
  it("audit verify exits 0 on an intact log and prints a one-line summary", async () => {
    const path = await writeLog("intact.jsonl", [...makeLines(3, "a"), ...makeLines(2, "b")]);
    const { code, stdout, stderr } = await runChild("audit", "verify", path);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(stdout.split("\n")[0]).toBe(`OK: 5 records, 2 origins, chains intact in ${path}`);
    // The report says exactly what is covered: here nothing is signed.
    expect(stdout).toContain("only hash-chained");
  });

  it("audit verify exits 1 naming the first bad line, its seq and the fault", async () => {
    const lines = makeLines(4);
    const path = await writeLog("gap.jsonl", [lines[0]!, lines[1]!, lines[3]!]);
    const { code, stdout } = await runChild("audit", "verify", path);
    expect(code).toBe(1);
    expect(stdout.split("\n")[0]).toBe(`FAILED: gap at line 3 of ${path} (seq 4)`);
    expect(stdout).toContain("seq 3 is missing");
  });

  it("audit verify --json prints the result as JSON", async () => {
    const lines = makeLines(2);
    const path = await writeLog("edited.jsonl", [lines[0]!, lines[1]!.replace('"i":1', '"i":9')]);
    const { code, stdout } = await runChild("audit", "verify", path, "--json");
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({ ok: false, fault: "edited", line: 2, seq: 2, file: path, files: [path] });
  });

  it("exits 2 with a clear message for a missing file and for bad usage", async () => {
    const missing = await runChild("audit", "verify", join(dir, "nope.jsonl"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`cannot read ${join(dir, "nope.jsonl")}: no audit log at`);
    const usage = await runChild("audit", "verify");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("expected exactly one FILE");
  });
});

describe("main (in process)", () => {
  it("lists commands on --help (exit 0) and with no arguments (exit 2)", async () => {
    const help = await run("--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/audit +audit log tools/);
    const none = await run();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("Usage: openrtc <command>");
  });

  it("rejects unknown commands, subcommands and options with exit 2", async () => {
    expect(await run("bogus")).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown command "bogus"') });
    expect(await run("audit")).toMatchObject({ code: 2, stderr: expect.stringContaining("missing subcommand") });
    expect(await run("audit", "nope")).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown subcommand "nope"') });
    const path = await writeLog("opts.jsonl", makeLines(1));
    expect(await run("audit", "verify", path, "--bogus")).toMatchObject({ code: 2, stderr: expect.stringContaining("Unknown option '--bogus'") });
    expect(await run("audit", "verify", path, path)).toMatchObject({ code: 2, stderr: expect.stringContaining("got 2") });
    // Names on Object.prototype are not commands.
    expect(await run("toString")).toMatchObject({ code: 2 });
  });

  it("prints the verify usage on --help", async () => {
    const { code, stdout } = await run("audit", "verify", "--help");
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: openrtc audit verify FILE");
  });

  it("exits 2 when the path cannot be read", async () => {
    const file = await writeLog("plain.jsonl", makeLines(1));
    const underFile = await run("audit", "verify", join(file, "child.jsonl"));
    expect(underFile.code).toBe(2);
    expect(underFile.stderr).toMatch(/cannot read .*child\.jsonl: /);
    const empty = await mkdtemp(join(dir, "empty-"));
    expect(await run("audit", "verify", empty)).toMatchObject({ code: 2, stderr: expect.stringContaining("no audit log in") });
  });

  it("verifies a rotated set in order and names the file of a bad line", async () => {
    const setDir = await mkdtemp(join(dir, "set-"));
    const active = join(setDir, "audit.jsonl");
    const lines = makeLines(5);
    await writeFile(rotatedAuditFilePath(active, 1), `${lines.slice(0, 2).join("\n")}\n`);
    await writeFile(rotatedAuditFilePath(active, 2), `${lines.slice(2, 4).join("\n")}\n`);
    await writeFile(active, `${lines[4]!}\n`);
    expect(await run("audit", "verify", active)).toMatchObject({ code: 0, stdout: expect.stringContaining("OK: 5 records, 1 origin, chains intact in 3 files") });
    expect(await run("audit", "verify", setDir)).toMatchObject({ code: 0 });
    await writeFile(rotatedAuditFilePath(active, 2), `${lines[2]!}\n`);
    const gap = await run("audit", "verify", active);
    expect(gap.code).toBe(1);
    expect(gap.stdout).toContain(`FAILED: gap at line 1 of ${active} (seq 5)`);
  });

  it("ignores (and mentions) a partial last line being written, but not a complete bad one", async () => {
    const lines = makeLines(3);
    const path = join(dir, "live.jsonl");
    await writeFile(path, `${lines[0]!}\n${lines[1]!}\n${lines[2]!.slice(0, 40)}`);
    const live = await run("audit", "verify", path);
    expect(live.code).toBe(0);
    expect(live.stdout).toContain("OK: 2 records");
    expect(live.stdout).toContain("ignored the unterminated, incomplete last line 3");
    await writeFile(path, `${lines[0]!}\n${lines[1]!.slice(0, 40)}\n${lines[2]!}\n`);
    expect(await run("audit", "verify", path)).toMatchObject({ code: 1, stdout: expect.stringContaining("FAILED: malformed at line 2") });
  });

  it("reads standard input for -", async () => {
    const lines = makeLines(3);
    let stdout = "";
    const io: CliIo = { stdout: (t) => void (stdout += t), stderr: () => {}, env: {}, stdin: [`${lines[0]!}\n${lines[1]!}`, `\n${lines[2]!}\n`] };
    expect(await main(["audit", "verify", "-"], io)).toBe(0);
    expect(stdout.split("\n")[0]).toBe("OK: 3 records, 1 origin, chains intact in standard input");
    stdout = "";
    const gap: CliIo = { ...io, stdin: [`${lines[0]!}\n${lines[2]!}\n`] };
    expect(await main(["audit", "verify", "-"], gap)).toBe(1);
    expect(stdout).toContain("FAILED: gap at line 2 (seq 3)");
    expect(await run("audit", "verify", "-")).toMatchObject({ code: 2, stderr: expect.stringContaining("no standard input") });
  });

  it("accepts a pruned log with --partial", async () => {
    const path = await writeLog("pruned.jsonl", makeLines(4).slice(2));
    expect((await run("audit", "verify", path)).code).toBe(1);
    expect(await run("audit", "verify", path, "--partial")).toMatchObject({ code: 0, stdout: expect.stringContaining("OK: 2 records") });
  });

  it("keeps one dispatch table that other commands can join", () => {
    expect(Object.keys(commands)).toContain("audit");
    for (const command of Object.values(commands)) {
      expect(command.summary.length).toBeGreaterThan(0);
      expect(command.usage).toContain("Usage: openrtc");
    }
  });
});

describe("audit verify with signed checkpoints", () => {
  const SECRET = "cli-secret-value";
  const ed = generateKeyPairSync("ed25519");

  async function signedLog(name: string) {
    const lines: string[] = [];
    let kept: AuditRecord | undefined;
    const log = new AuditLog({
      origin: "w1",
      sinks: [{ name: "mem", write: async (rs) => void lines.push(...rs.map((r) => JSON.stringify(r))) }],
      checkpoint: { every: 1000, hmacSecrets: [SECRET], ed25519PrivateKey: ed.privateKey },
      hooks: { onCheckpoint: (r) => void (kept = r) },
    });
    for (let i = 0; i < 4; i++) log.emit("x", { i });
    await log.close();
    const path = await writeLog(name, lines);
    const keyFile = join(dir, `${name}.pub.pem`);
    await writeFile(keyFile, ed.publicKey.export({ type: "spki", format: "pem" }));
    const expectFile = join(dir, `${name}.checkpoint.json`);
    await writeFile(expectFile, `${JSON.stringify(kept)}\n`);
    return { path, lines, keyFile, expectFile };
  }

  it("checks signatures with a secret from the environment (child process)", async () => {
    const { path } = await signedLog("signed.jsonl");
    const ok = await runChildWithEnv({ AUDIT_HMAC: SECRET }, "audit", "verify", path, "--hmac-secret-env", "AUDIT_HMAC", "--require-signed");
    expect(ok).toMatchObject({ code: 0, stdout: expect.stringMatching(/w1: seq 1\.\.5, signed 1\.\.4 by the checkpoint at seq 5 \(.*\)/) });
    const wrong = await runChildWithEnv({ AUDIT_HMAC: "not-it" }, "audit", "verify", path, "--hmac-secret-env", "AUDIT_HMAC");
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain("FAILED: bad_signature at line 5");
    expect(wrong.stdout + wrong.stderr).not.toContain("not-it");
  });

  it("checks Ed25519 signatures with a public key file and a cut tail with --expect-checkpoint", async () => {
    const { path, lines, keyFile, expectFile } = await signedLog("ed.jsonl");
    expect(await run("audit", "verify", path, "--ed25519-public-key", keyFile, "--expect-checkpoint", expectFile)).toMatchObject({ code: 0 });
    await writeFile(path, `${lines.slice(0, 2).join("\n")}\n`);
    const cut = await run("audit", "verify", path, "--expect-checkpoint", expectFile);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain("FAILED: truncated at line 2");
  });

  it("fails an unsigned log with --require-signed", async () => {
    const path = await writeLog("unsigned.jsonl", makeLines(2));
    const result = await runWithEnv({ K: SECRET }, "audit", "verify", path, "--hmac-secret-env", "K", "--require-signed");
    expect(result).toMatchObject({ code: 1, stdout: expect.stringContaining("FAILED: unsigned") });
  });

  it("exits 2 for a missing secret variable, an unreadable or wrong key, a bad checkpoint file", async () => {
    const { path, keyFile } = await signedLog("usage.jsonl");
    expect(await run("audit", "verify", path, "--hmac-secret-env", "NOPE")).toMatchObject({ code: 2, stderr: expect.stringContaining("environment variable NOPE (--hmac-secret-env) is not set") });
    expect(await run("audit", "verify", path, "--ed25519-public-key", join(dir, "missing.pem"))).toMatchObject({ code: 2, stderr: expect.stringContaining("missing.pem (--ed25519-public-key): no such file") });
    expect(await run("audit", "verify", path, "--ed25519-public-key", path)).toMatchObject({ code: 2, stderr: expect.stringContaining("cannot read the Ed25519 public key") });
    expect(await run("audit", "verify", path, "--expect-checkpoint", keyFile)).toMatchObject({ code: 2, stderr: expect.stringContaining("is not JSON") });
    expect(await run("audit", "verify", path, "--require-signed")).toMatchObject({ code: 2, stderr: expect.stringContaining("--require-signed needs --hmac-secret-env or --ed25519-public-key") });
  });
});

describe("audit verify s3://", () => {
  it("without @openrtc/audit-sinks installed beside core: exit 2 naming what to install", async () => {
    let stderr = "";
    const code = await main(["audit", "verify", "s3://bucket/audit"], { stdout: () => {}, stderr: (t) => (stderr += t), env: {} });
    expect(code).toBe(2);
    expect(stderr).toContain("npm install @openrtc/audit-sinks @aws-sdk/client-s3");
  });
});
