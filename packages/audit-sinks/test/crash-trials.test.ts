/**
 * Crash trials: real `node` child processes (crash-child.ts) run an AuditLog over the file sink
 * under load and are killed with SIGKILL at random points. After each kill the parent checks
 * the files as the crash left them, then reopens them through the sink and verifies the chain:
 * - every record acknowledged to the child (it printed `ack <seq>`) is on disk;
 * - only the active file's last line may be torn, and reopening moves exactly it aside;
 * - what is on disk, across rotated files and every earlier trial's origin, verifies.
 * Trials of one mode share one log, so each child also starts from the previous crash; in the
 * chunked and pause modes each child resumes the chain (`resumeFrom` the file's last record), so
 * one chain runs through all eight crashes; plain-mode children each start their own origin.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AuditVerifier, listAuditFiles, readAuditFiles } from "@openrtc/core/audit";
import type { AuditRecord } from "@openrtc/core/audit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileSink } from "../src/file/index.ts";
import type { FileSinkWarning } from "../src/file/index.ts";
import { bundleForNode } from "../src/file/test-helpers.ts";

type Mode = "plain" | "chunked" | "pause";
const TRIALS_PER_MODE = 8;
const MAX_BYTES = 48 * 1024;

let work: string;
let childScript: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "crash-trials-"));
  childScript = join(work, "crash-child.mjs");
  // One bundle, built once, so each trial pays only for a bare `node` start.
  await bundleForNode(fileURLToPath(new URL("./crash-child.ts", import.meta.url)), childScript);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface TrialOutcome {
  pid: number;
  origin: string;
  acked: number;
  stderr: string;
}

/** Runs one child and SIGKILLs it: after a random number of acks, or when it pauses mid-line. */
function runTrial(path: string, mode: Mode, seed: number): Promise<TrialOutcome> {
  const resume = mode !== "plain";
  const child = spawn(process.execPath, [childScript, JSON.stringify({ path, mode, seed, maxBytes: MAX_BYTES, resume })], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const killAfterAcks = 1 + (seed % 7);
  let origin = "";
  let acked = 0;
  let acks = 0;
  let stderr = "";
  let buffered = "";
  let killed = false;
  const kill = (): void => {
    if (killed) return;
    killed = true;
    child.kill("SIGKILL");
  };
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf("\n")) !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      // Lines read after the kill were still printed before it: they count.
      if (line.startsWith("origin ")) origin = line.slice(7);
      else if (line.startsWith("ack ")) {
        acked = Math.max(acked, Number(line.slice(4)));
        acks += 1;
        if (mode !== "pause" && acks >= killAfterAcks) {
          // A little extra run time so the kill lands anywhere in the write/fsync cycle.
          setTimeout(kill, seed % 5);
        }
      } else if (line === "paused") kill();
    }
  });
  const guard = setTimeout(kill, 10_000);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(guard);
      if (signal !== "SIGKILL" || origin === "") {
        reject(new Error(`crash child (mode ${mode}, seed ${seed}) ended with ${signal ?? code}:\n${stderr}`));
      } else {
        resolve({ pid: child.pid as number, origin, acked, stderr });
      }
    });
  });
}

const stats = { trials: 0, ackedSeqsChecked: 0, torn: 0, tornBytes: 0, rotatedFiles: 0, maxTrialMs: 0 };

describe.each(["plain", "chunked", "pause"] as const)("kill -9 trials, %s writes", (mode) => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(work, `${mode}-`));
  });

  it.each(Array.from({ length: TRIALS_PER_MODE }, (_, i) => i))("trial %i", async (trial) => {
    const started = performance.now();
    const path = join(dir, "audit.jsonl");
    const seed = 1000 * (["plain", "chunked", "pause"].indexOf(mode) + 1) + trial * 7919;
    const { pid, origin, acked } = await runTrial(path, mode, seed);
    const context = `mode ${mode}, trial ${trial}, seed ${seed}, acked ${acked}`;

    // 1. The files exactly as the crash left them.
    const files = await listAuditFiles(path);
    const seqs = new Set<number>();
    let tornTail: string | undefined;
    for await (const { file, line, terminated } of readAuditFiles(path)) {
      if (!terminated) {
        expect(file, `only the active file may end torn (${context})`).toBe(path);
        tornTail = line;
        continue;
      }
      const record = JSON.parse(line) as AuditRecord;
      if (record.origin === origin) seqs.add(record.seq);
    }
    for (let seq = 1; seq <= acked; seq++) {
      if (!seqs.has(seq)) expect.fail(`acknowledged record ${seq} is missing (${context})`);
    }

    // 2. Reopening handles the torn tail: moved aside, reported, never glued to.
    const warnings: FileSinkWarning[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w) });
    const info = await sink.open();
    await sink.close();
    if (tornTail === undefined) {
      expect(info.recovered, context).toBeUndefined();
    } else {
      expect(info.recovered?.bytes, context).toBe(Buffer.byteLength(tornTail));
      expect(warnings.map((w) => w.code), context).toContain("torn_tail");
      stats.torn += 1;
      stats.tornBytes += Buffer.byteLength(tornTail);
    }
    // The killed child still "holds" the lock; reopening sees its owner is dead and takes over.
    expect(warnings.filter((w) => w.code === "stale_lock").map((w) => w.message), context).toEqual([
      expect.stringContaining(`from process ${pid} on `),
    ]);
    if (mode === "pause") expect(tornTail, `a pause lands mid-line (${context})`).toBeDefined();
    expect((await readFile(path, "utf8")).endsWith("\n") || (await readFile(path, "utf8")) === "").toBe(true);

    // 3. Everything on disk verifies, across rotated files and all earlier trials' origins.
    const verifier = new AuditVerifier();
    for await (const { file, lineNo, line } of readAuditFiles(path)) verifier.push(line, { file, line: lineNo });
    const result = verifier.finish();
    if (!result.ok) expect.fail(`verification failed (${context}): ${result.message}`);
    expect(result.origins, context).toBe(mode === "plain" ? trial + 1 : 1);
    const chain = result.chains.find((c) => c.origin === origin);
    expect(chain?.lastSeq ?? 0, context).toBeGreaterThanOrEqual(acked);
    expect(info.lastRecord?.seq ?? 0).toBeGreaterThanOrEqual(acked);

    stats.trials += 1;
    stats.ackedSeqsChecked += acked;
    stats.rotatedFiles = Math.max(stats.rotatedFiles, files.length - 1);
    stats.maxTrialMs = Math.max(stats.maxTrialMs, performance.now() - started);
  });
});

describe("a live writer", () => {
  it("keeps a second process off its file until it is killed", async () => {
    const dir = await mkdtemp(join(work, "live-"));
    const path = join(dir, "audit.jsonl");
    const child = spawn(process.execPath, [childScript, JSON.stringify({ path, mode: "plain", seed: 5, maxBytes: MAX_BYTES, resume: false })], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("ack ")) resolve();
        });
        child.once("exit", () => reject(new Error("crash child exited early")));
      });
      await expect(fileSink({ path }).open()).rejects.toThrow(`is being written by process ${child.pid}`);
    } finally {
      child.kill("SIGKILL");
    }
    await new Promise((resolve) => child.once("exit", resolve));
    const sink = fileSink({ path, onWarning: () => undefined });
    await sink.open();
    await sink.close();
  });
});

describe("crash trial summary", () => {
  it("ran every trial and saw torn tails", () => {
    console.log(`crash trials: ${JSON.stringify(stats)}`);
    expect(stats.trials).toBe(3 * TRIALS_PER_MODE);
    expect(stats.torn).toBeGreaterThanOrEqual(TRIALS_PER_MODE);
  });
});
