// The findings of issue 13 ("an audit trail an auditor can trust"), one test each: every one of
// these passed (wrongly) or crashed on the code before it.
import { generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { AgentPool } from "../pool.ts";
import { silentLogger } from "../logger.ts";
import { main } from "../cli.ts";
import type { CliIo } from "../cli-command.ts";
import { AuditLog } from "./log.ts";
import type { AuditRecord, AuditSink } from "./log.ts";
import { computeRecordHash } from "./hash.ts";
import { hmacKeyId } from "./checkpoint.ts";
import { verifyAuditLog } from "./verify.ts";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SECRET = "k-one";
const tick = () => new Promise((resolve) => setImmediate(resolve));

function collector(name = "mem"): AuditSink & { lines: string[] } {
  const lines: string[] = [];
  return { name, lines, write: async (rs) => void lines.push(...rs.map((r) => JSON.stringify(r))) };
}

function makeLines(n: number, origin = "w1"): string[] {
  const log = new AuditLog({ origin, clock: () => 1000 });
  return Array.from({ length: n }, (_, i) => JSON.stringify(log.emit("deployment.started", { actor: "ci", i })));
}

describe("the verifier checks bytes, not parsed JSON", () => {
  it("fails a duplicate key (the parsed record would verify)", () => {
    const lines = makeLines(2);
    lines[0] = lines[0]!.replace('"event":"deployment.started"', '"event":"deployment.rolled_back","event":"deployment.started"');
    expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "edited", line: 1 });
  });

  it("fails re-spelled escapes and numbers", () => {
    const escaped = makeLines(1);
    escaped[0] = escaped[0]!.replace('"actor":"ci"', '"actor":"\\u0063i"');
    expect(verifyAuditLog(escaped)).toMatchObject({ ok: false, fault: "edited" });
    const number = makeLines(1);
    number[0] = number[0]!.replace('"timestamp":1000', '"timestamp":1e3');
    expect(verifyAuditLog(number)).toMatchObject({ ok: false, fault: "edited" });
  });

  it("fails invalid UTF-8 that decodes to the same text", () => {
    const log = new AuditLog({ origin: "w1" });
    const line = JSON.stringify(log.emit("x", { note: "\ufffd" }));
    const bytes = Buffer.from(line, "utf8");
    const at = bytes.indexOf(Buffer.from("\ufffd", "utf8"));
    const forged = Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at + 3)]);
    expect(forged.toString("utf8")).toBe(line); // a text-based check cannot see the change
    expect(verifyAuditLog([bytes])).toMatchObject({ ok: true });
    expect(verifyAuditLog([forged])).toMatchObject({ ok: false, fault: "edited", message: expect.stringContaining("UTF-8") });
  });

  it("reports a line nested 5,000 deep as malformed instead of crashing", async () => {
    const deep = `{"seq":1,"x":${"[".repeat(5000)}${"]".repeat(5000)}}`;
    expect(verifyAuditLog([deep])).toMatchObject({ ok: false, fault: "malformed", message: expect.stringContaining("nested too deep") });
    let out = "";
    const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (out += t), env: {}, stdin: [`${deep}\n`] };
    expect(await main(["audit", "verify", "-"], io)).toBe(1);
    expect(out).toContain("FAILED: malformed");
  });

  it("bounds the line size", () => {
    const lines = makeLines(1);
    expect(verifyAuditLog(lines, { maxLineBytes: 100 })).toMatchObject({ ok: false, fault: "malformed", message: expect.stringContaining("line limit") });
    expect(verifyAuditLog([Buffer.alloc(2_000_000, 0x20)])).toMatchObject({ ok: false, fault: "malformed" });
  });

  it("--require-signed fails an empty log (exit 1)", async () => {
    expect(verifyAuditLog([], { requireSigned: true, hmacSecrets: [SECRET] })).toMatchObject({ ok: false, fault: "unsigned" });
    const dir = await mkdtemp(join(tmpdir(), "trust-"));
    await writeFile(join(dir, "audit.jsonl"), "");
    let out = "";
    const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (out += t), env: { K: SECRET } };
    expect(await main(["audit", "verify", join(dir, "audit.jsonl"), "--require-signed", "--hmac-secret-env", "K"], io)).toBe(1);
    expect(out).toContain("FAILED: unsigned");
  });
});

describe("loss is recorded, never silent", () => {
  it("overflow at the tail, then recovery: the verifier says overflow (with the range), not OK and not deletion", async () => {
    let release: (() => void) | undefined;
    const lines: string[] = [];
    const slow: AuditSink = {
      name: "slow",
      write: (rs) => new Promise((resolve) => {
        release = () => {
          lines.push(...rs.map((r) => JSON.stringify(r)));
          resolve();
        };
      }),
    };
    const dropped: number[] = [];
    const log = new AuditLog({ origin: "w1", sinks: [slow], maxQueue: 2, hooks: { onDropped: (_s, n) => dropped.push(n) } });
    for (let i = 0; i < 6; i++) log.emit("x", { i });
    await tick();
    expect(log.stats().sinks[0]).toMatchObject({ dropped: 4, pending: 2 });
    expect((await log.flush({ timeoutMs: 5 })).undelivered[0]).toMatchObject({ unrecordedLoss: true });
    release!(); // room again: the marker goes out at once, then the next record
    await tick();
    release!();
    await tick();
    log.emit("y");
    await tick();
    release!();
    const result = await log.flush();
    expect(result.ok).toBe(true); // describes the present: the loss is on record, nothing pending
    expect(dropped).toEqual([4]);
    expect(lines.map((l) => JSON.parse(l).event)).toEqual(["x", "x", "audit.records_dropped", "y"]);
    expect(verifyAuditLog(lines)).toMatchObject({
      ok: false,
      fault: "overflow",
      lost: [{ origin: "w1", sink: "slow", firstSeq: 3, lastSeq: 6 }],
    });
  });

  it("a forged marker cannot explain away a deletion", () => {
    const lines = makeLines(6);
    const recs = lines.map((l) => JSON.parse(l) as AuditRecord);
    // Delete seq 3..4 and put a self-consistent marker (seq 5, correct own hash) in place of seq 5.
    const marker: Record<string, unknown> = {
      seq: 5, timestamp: 1000, event: "audit.records_dropped", actor: "system", target: "mem", result: "dropped", version: null,
      sink: "mem", dropped_first_seq: 3, dropped_last_seq: 4, dropped_count: 2, dropped_prev_hash: recs[1]!.hash, reason: "queue_full",
      origin: "w1", prev_hash: recs[3]!.hash,
    };
    marker.hash = computeRecordHash(marker);
    const forged = [lines[0]!, lines[1]!, JSON.stringify(marker), lines[5]!];
    const result = verifyAuditLog(forged);
    expect(result.ok).toBe(false);
    expect(result).not.toMatchObject({ fault: "overflow" });
    expect(result).toMatchObject({ fault: "broken_chain", line: 4 });
    // And a caller cannot emit one: the name is reserved for the log.
    expect(new AuditLog({ origin: "w2" }).emit("audit.records_dropped", { dropped_first_seq: 1 }).event).toBe("audit.reserved_event");
  });
});

describe("checkpoints cover what they say", () => {
  it("binds keys to origins: a trusted key signing another worker's origin is rejected", async () => {
    const sink = collector();
    const log = new AuditLog({ origin: "worker-b", sinks: [sink], checkpoint: { every: 2, hmacSecrets: [SECRET] } });
    log.emit("x");
    log.emit("y");
    await log.close();
    const id = hmacKeyId(SECRET);
    expect(verifyAuditLog(sink.lines, { hmacSecrets: [SECRET], keyOrigins: { [id]: ["worker-b*"] } })).toMatchObject({ ok: true });
    expect(verifyAuditLog(sink.lines, { hmacSecrets: [SECRET], keyOrigins: { [id]: ["worker-a"] } })).toMatchObject({ ok: false, fault: "bad_signature", message: expect.stringContaining("not allowed to sign origin worker-b") });
  });

  it("the signed message covers the time: a checkpoint re-dated (and re-hashed) fails its signature", async () => {
    const sink = collector();
    const log = new AuditLog({ origin: "w1", sinks: [sink], clock: () => 1000, checkpoint: { every: 1000, hmacSecrets: [SECRET] } });
    log.emit("x");
    log.emit("y");
    await log.close();
    expect(verifyAuditLog(sink.lines, { hmacSecrets: [SECRET] })).toMatchObject({ ok: true });
    const redated = sink.lines.map((l) => {
      const r = JSON.parse(l) as Record<string, unknown>;
      if (r.event !== "audit.checkpoint") return l;
      const edited: Record<string, unknown> = { ...r, checkpoint_time: 999, timestamp: 999 };
      edited.hash = computeRecordHash(edited);
      return JSON.stringify(edited);
    });
    expect(verifyAuditLog(redated, { hmacSecrets: [SECRET] })).toMatchObject({ ok: false, fault: "bad_signature" });
  });

  it("openrtc audit verify --key-origin binds a key id to origins (exit 1 for another origin, 2 for a malformed binding)", async () => {
    const sink = collector();
    const log = new AuditLog({ origin: "worker-b", sinks: [sink], checkpoint: { every: 1000, hmacSecrets: [SECRET] } });
    log.emit("x");
    await log.close();
    const dir = await mkdtemp(join(tmpdir(), "trust-key-origin-"));
    const file = join(dir, "audit.jsonl");
    await writeFile(file, sink.lines.map((l) => `${l}\n`).join(""));
    const run = async (...extra: string[]) => {
      let out = "";
      const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (out += t), env: { K: SECRET } };
      return { code: await main(["audit", "verify", file, "--hmac-secret-env", "K", "--require-signed", ...extra], io), out };
    };
    const id = hmacKeyId(SECRET);
    expect(await run("--key-origin", `${id}=worker-*`)).toMatchObject({ code: 0 });
    expect(await run("--key-origin", `${id}=worker-a`)).toMatchObject({ code: 1, out: expect.stringContaining("not allowed to sign origin worker-b") });
    expect(await run("--key-origin", "no-equals-sign")).toMatchObject({ code: 2 });
  });

  it("signs through an external signer, so the key never lives in the writer", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const requests: Uint8Array[] = [];
    const sink = collector();
    const log = new AuditLog({
      origin: "w1",
      sinks: [sink],
      checkpoint: {
        every: 3,
        signer: {
          algorithm: "ed25519",
          keyId: "kms-key-1",
          // Stands for a KMS call or a request to a signer process: async, key held elsewhere.
          sign: async (message) => {
            requests.push(message);
            await tick();
            return sign(null, message, privateKey);
          },
        },
      },
    });
    for (let i = 0; i < 3; i++) log.emit("x", { i });
    await tick();
    await log.close();
    const events = sink.lines.map((l) => JSON.parse(l).event);
    expect(events).toContain("audit.checkpoint_signature");
    expect(requests.length).toBeGreaterThan(0);
    const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
    expect(verifyAuditLog(sink.lines, { ed25519PublicKeys: [pem], requireSigned: true })).toMatchObject({
      ok: true,
      chains: [{ origin: "w1", signedSize: 3, signedCheckpoint: { seq: 4, size: 3 } }],
    });
    // A signature that does not verify is reported, not ignored.
    const other = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
    expect(verifyAuditLog(sink.lines, { ed25519PublicKeys: [other] })).toMatchObject({ ok: false, fault: "bad_signature" });
  });

  it("--state catches a later log that is shorter, forked, rewritten, or lost an origin", async () => {
    const dir = await mkdtemp(join(tmpdir(), "trust-state-"));
    const state = join(dir, "state.json");
    const run = async (lines: string[], name: string) => {
      const file = join(dir, name);
      await writeFile(file, lines.map((l) => `${l}\n`).join(""));
      let out = "";
      const io: CliIo = { stdout: (t) => void (out += t), stderr: (t) => void (out += t), env: { K: SECRET } };
      const code = await main(["audit", "verify", file, "--hmac-secret-env", "K", "--state", state], io);
      return { code, out };
    };
    const signedRun = async (n: number, tag: string) => {
      const sink = collector();
      const log = new AuditLog({ origin: "w1", sinks: [sink], clock: () => 1000, checkpoint: { every: 1000, hmacSecrets: [SECRET] } });
      for (let i = 0; i < n; i++) log.emit("x", { tag, i });
      await log.close();
      return sink.lines;
    };
    const full = await signedRun(4, "a");
    expect(await run(full, "a.jsonl")).toMatchObject({ code: 0 });
    // Cut back to before the checkpoint: the tail truncation verifies alone, not against the state.
    const cut = full.slice(0, 3);
    expect(verifyAuditLog(cut)).toMatchObject({ ok: true });
    expect(await run(cut, "cut.jsonl")).toMatchObject({ code: 1, out: expect.stringContaining("FAILED: truncated") });
    // Another signed run of the same origin (same length): a fork.
    const fork = await signedRun(4, "b");
    expect(await run(fork, "fork.jsonl")).toMatchObject({ code: 1, out: expect.stringContaining("FAILED: checkpoint_mismatch") });
    // Every record of the origin deleted.
    const other = makeLines(2, "w9");
    expect(await run(other, "other.jsonl")).toMatchObject({ code: 1, out: expect.stringContaining("has no record of it") });
  });
});

describe("AgentPool({ audit })", () => {
  it("signs the pool's own trail, and resumes a fixed origin from a sink after a restart", async () => {
    const lines: string[] = [];
    // A sink that can tell its last record, as the file and S3 sinks do.
    const durable = (): AuditSink => ({
      name: "durable",
      write: async (rs) => void lines.push(...rs.map((r) => JSON.stringify(r))),
      chainHead: (origin) => {
        const mine = lines.map((l) => JSON.parse(l) as AuditRecord).filter((r) => r.origin === origin);
        const last = mine[mine.length - 1];
        return last && { origin, seq: last.seq, hash: last.hash };
      },
    });
    for (let restart = 0; restart < 2; restart++) {
      const pool = new AgentPool({
        deploymentVersion: "v1",
        logger: silentLogger,
        audit: { sinks: [durable()], origin: "worker-1", checkpoint: { every: 1000, hmacSecrets: [SECRET] } },
      });
      pool.beginDrain({ actor: "ops", reason: "deploy" });
      await pool.close({ dropLiveSessions: true });
    }
    expect(verifyAuditLog(lines, { hmacSecrets: [SECRET], requireSigned: true })).toMatchObject({ ok: true, origins: 1 });
    expect(lines.map((l) => JSON.parse(l).seq)).toEqual(lines.map((_l, i) => i + 1)); // one chain across the restart
    // The finding: a full rewrite of the pool's log (actor changed, every hash recomputed) verified
    // OK. With the pool's checkpoints it no longer does.
    let prev = "0".repeat(64);
    const rewritten = lines.map((l) => {
      const r = JSON.parse(l) as Record<string, unknown>;
      const edited: Record<string, unknown> = { ...r, prev_hash: prev, ...(r.event === "deployment.drain_started" ? { actor: "intruder" } : {}) };
      if (edited.event === "audit.checkpoint") edited.checkpoint_head = prev;
      edited.hash = computeRecordHash(edited);
      prev = edited.hash as string;
      return JSON.stringify(edited);
    });
    expect(verifyAuditLog(rewritten)).toMatchObject({ ok: true }); // the chain alone cannot tell
    expect(verifyAuditLog(rewritten, { hmacSecrets: [SECRET], requireSigned: true })).toMatchObject({ ok: false, fault: "bad_signature" });
    // The old shorthands still work.
    const sink = collector();
    const pool = new AgentPool({ logger: silentLogger, auditSinks: [sink], auditOrigin: "w-short" });
    await pool.close({ dropLiveSessions: true });
    expect(JSON.parse(sink.lines[0]!).origin).toBe("w-short");
  });
});

describe("AgentPool: audit loss in metrics", () => {
  it("an overflow is counted in openrtc_audit_records_dropped_total{sink}; openrtc_audit_queue_depth{sink} shows the backlog", async () => {
    let release: (() => void) | undefined;
    const slow: AuditSink = { name: "slow", write: () => new Promise<void>((resolve) => (release = resolve)) };
    const pool = new AgentPool({ logger: silentLogger, audit: { sinks: [slow], maxQueue: 2 } });
    for (let i = 0; i < 6; i++) pool.auditLog.emit("x", { i });
    await tick();
    const text = await pool.metrics.scrape();
    expect(text).toMatch(/^openrtc_audit_records_dropped_total\{sink="slow"\} 4$/m);
    expect(text).toMatch(/^openrtc_audit_queue_depth\{sink="slow"\} 2$/m);
    release!();
  });
});

describe("AuditLog.flushSync", () => {
  it("hands every unacknowledged record to writeSync at once, and skips sinks without it", () => {
    const got: number[] = [];
    const log = new AuditLog({
      origin: "w1",
      flushOnExit: false,
      sinks: [
        { name: "sync", write: () => new Promise(() => {}), writeSync: (rs) => void got.push(...rs.map((r) => r.seq)) },
        { name: "async-only", write: () => new Promise(() => {}) },
      ],
    });
    log.emit("a");
    log.emit("b");
    const result = log.flushSync();
    expect(got).toEqual([1, 2]);
    expect(result.undelivered).toEqual([expect.objectContaining({ sink: "async-only", pending: 2 })]);
  });

  it("counts a throwing writeSync as a sink error, never throws", () => {
    const log = new AuditLog({ origin: "w1", flushOnExit: false, sinks: [{ name: "bad", write: async () => {}, writeSync: () => { throw new Error("disk gone"); } }] });
    log.emit("a");
    expect(log.flushSync()).toMatchObject({ ok: false });
    expect(log.stats().sinks[0]).toMatchObject({ errors: 1, lastError: "Error: disk gone" });
  });
});
