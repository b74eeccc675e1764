import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import fc from "fast-check";
import { AuditEventType, AuditLog } from "./log.ts";
import type { AuditRecord, AuditSink } from "./log.ts";
import { computeRecordHash } from "./hash.ts";
import { CHECKPOINT_EVENT, checkpointMessage, hmacKeyId } from "./checkpoint.ts";
import { verifyAuditLog } from "./verify.ts";

const SECRET = "s3cret-current";
const OLD_SECRET = "s3cret-previous";
const ed = generateKeyPairSync("ed25519");
const edPublicPem = ed.publicKey.export({ type: "spki", format: "pem" }).toString();
const tick = () => new Promise((resolve) => setImmediate(resolve));

function collector() {
  const lines: string[] = [];
  const sink: AuditSink = { name: "mem", write: async (rs) => void lines.push(...rs.map((r) => JSON.stringify(r))) };
  return { sink, lines };
}

type Rec = Record<string, unknown> & { seq: number; hash: string; prev_hash: string; event: string };
const parse = (l: string) => JSON.parse(l) as Rec;

/** What an attacker with write access but no key can do: edit, then re-hash everything after. */
function rewriteFrom(lines: string[], index: number, edit: (r: Rec) => Rec): string[] {
  const out = lines.slice(0, index);
  let prev = index === 0 ? "0".repeat(64) : parse(lines[index - 1]!).hash;
  for (let i = index; i < lines.length; i++) {
    let r: Rec = { ...parse(lines[i]!), prev_hash: prev };
    if (i === index) r = edit(r);
    if (r.event === CHECKPOINT_EVENT) r = { ...r, checkpoint_head: prev };
    r = { ...r, hash: computeRecordHash(r) };
    prev = r.hash;
    out.push(JSON.stringify(r));
  }
  return out;
}

describe("signed checkpoints", () => {
  it("writes a checkpoint every N records, signed with HMAC and Ed25519, that verifies", async () => {
    const { sink, lines } = collector();
    const seen: AuditRecord[] = [];
    const log = new AuditLog({
      origin: "w1",
      sinks: [sink],
      checkpoint: { every: 3, hmacSecrets: [SECRET, OLD_SECRET], ed25519PrivateKey: ed.privateKey },
      hooks: { onCheckpoint: (r) => seen.push(r) },
    });
    for (let i = 0; i < 3; i++) log.emit("x", { i });
    await tick();
    log.emit("y");
    await log.flush();
    const cp = parse(lines[3]!);
    expect(Object.keys(cp)).toEqual([
      "seq", "timestamp", "event", "actor", "target", "result", "version",
      "checkpoint_size", "checkpoint_head", "checkpoint_time", "hmac_key_id", "hmac", "ed25519_key_id", "ed25519_sig",
      "origin", "prev_hash", "hash",
    ]);
    expect(cp).toMatchObject({ seq: 4, event: CHECKPOINT_EVENT, checkpoint_size: 3, checkpoint_head: parse(lines[2]!).hash, hmac_key_id: hmacKeyId(SECRET) });
    expect(JSON.stringify(cp)).not.toContain(SECRET);
    expect(seen.map((r) => r.seq)).toEqual([4]);
    expect(verifyAuditLog(lines, { hmacSecrets: [OLD_SECRET, SECRET], ed25519PublicKeys: [edPublicPem] })).toMatchObject({
      ok: true,
      records: 5,
      chains: [{ origin: "w1", checkpoints: 1, signedSize: 3, lastCheckpointVerifiedBy: ["hmac", "ed25519"] }],
    });
    // Without keys the chain still verifies; the signatures are just not checked.
    expect(verifyAuditLog(lines)).toMatchObject({ ok: true, chains: [{ checkpoints: 1, signedSize: 0 }] });
    expect(checkpointMessage("w1", 3, "ab", 1000.5).toString()).toBe('["openrtc.audit.checkpoint.v2","w1",3,"ab",1000.5]');
  });

  it("writes a final checkpoint at close, and none when nothing is new", async () => {
    const { sink, lines } = collector();
    const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint: { every: 100, hmacSecrets: [SECRET] } });
    expect(log.checkpoint()).toBeUndefined();
    log.emit("x");
    const forced = log.checkpoint();
    expect(forced).toMatchObject({ seq: 2, checkpoint_size: 1 });
    expect(log.checkpoint()).toBeUndefined();
    log.emit("y");
    await log.close();
    expect(lines.map((l) => parse(l).event)).toEqual(["x", CHECKPOINT_EVENT, "y", CHECKPOINT_EVENT]);
    expect(verifyAuditLog(lines, { hmacSecrets: [SECRET], requireSigned: true })).toMatchObject({ ok: true, chains: [{ signedSize: 3 }] });
  });

  it("writes a checkpoint every intervalSeconds when records were emitted", async () => {
    const { sink, lines } = collector();
    const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint: { intervalSeconds: 0.01, hmacSecrets: [SECRET] } });
    log.emit("x");
    await vi.waitFor(() => expect(lines.map((l) => parse(l).event)).toContain(CHECKPOINT_EVENT), { timeout: 5000, interval: 5 });
    await log.close();
    expect(lines.filter((l) => parse(l).event === CHECKPOINT_EVENT)).toHaveLength(1);
  });

  it("renames a caller's audit.checkpoint so it cannot pose as a real one", () => {
    const log = new AuditLog({ origin: "w1" });
    const r = log.emit(CHECKPOINT_EVENT, { checkpoint_size: 0 });
    expect(r).toMatchObject({ event: AuditEventType.ReservedEvent, field_conflicts: { event: CHECKPOINT_EVENT } });
  });

  it("rejects a checkpoint signed with a key the verifier does not know, or badly signed", async () => {
    const { sink, lines } = collector();
    const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint: { hmacSecrets: [SECRET] } });
    log.emit("x");
    log.checkpoint();
    await log.flush();
    expect(verifyAuditLog(lines, { hmacSecrets: ["other"] })).toMatchObject({ ok: false, fault: "bad_signature", line: 2, seq: 2, message: expect.stringContaining("matches none of the secrets") });
    const other = generateKeyPairSync("ed25519").publicKey;
    expect(verifyAuditLog(lines, { ed25519PublicKeys: [other] })).toMatchObject({ ok: false, fault: "bad_signature", message: expect.stringContaining("no signature that the keys given can check") });
    const forged = rewriteFrom(lines, 1, (r) => ({ ...r, hmac: "0".repeat(64) }));
    expect(verifyAuditLog(forged, { hmacSecrets: [SECRET] })).toMatchObject({ ok: false, fault: "bad_signature", message: expect.stringContaining("HMAC does not match") });
  });

  it("checks an Ed25519 signature under a caller-chosen key id", async () => {
    const { sink, lines } = collector();
    const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint: { ed25519PrivateKey: ed.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), keyId: "prod-2026" } });
    log.emit("x");
    log.checkpoint();
    await log.flush();
    expect(parse(lines[1]!).ed25519_key_id).toBe("prod-2026");
    expect(verifyAuditLog(lines, { ed25519PublicKeys: [ed.publicKey] })).toMatchObject({ ok: true, chains: [{ lastCheckpointVerifiedBy: ["ed25519"] }] });
    const tampered = rewriteFrom(lines, 1, (r) => ({ ...r, ed25519_sig: Buffer.alloc(64).toString("base64") }));
    expect(verifyAuditLog(tampered, { ed25519PublicKeys: [ed.publicKey] })).toMatchObject({ ok: false, fault: "bad_signature" });
  });

  it("property: rewriting covered history and re-hashing the whole chain is caught with the keys", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 25 }), fc.integer({ min: 1, max: 5 }), fc.nat(), fc.boolean(), async (n, every, pick, useEd) => {
        const { sink, lines } = collector();
        const checkpoint = useEd ? { every, ed25519PrivateKey: ed.privateKey } : { every, hmacSecrets: [SECRET] };
        const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint });
        for (let i = 0; i < n; i++) {
          log.emit("x", { i });
          await tick();
        }
        await log.close();
        const keys = useEd ? { ed25519PublicKeys: [edPublicPem] } : { hmacSecrets: [SECRET] };
        expect(verifyAuditLog(lines, keys).ok).toBe(true);
        // Records 1..size of the last checkpoint are covered (that checkpoint's own non-signed
        // fields, e.g. its timestamp, only by a later checkpoint).
        const covered = Math.max(...lines.map(parse).map((r) => (r.event === CHECKPOINT_EVENT ? (r.checkpoint_size as number) : 0)));
        const i = pick % covered;
        const rewritten = rewriteFrom(lines, i, (r) => ({ ...r, actor: "mallory" }));
        // The hash chain alone cannot see it; a signed checkpoint after the edit can.
        expect(verifyAuditLog(rewritten).ok).toBe(true);
        expect(verifyAuditLog(rewritten, keys)).toMatchObject({ ok: false, fault: "bad_signature" });
      }),
      { numRuns: 40 },
    );
  });

  it("catches a cut tail and rewritten history against a checkpoint kept elsewhere", async () => {
    const { sink, lines } = collector();
    let kept: AuditRecord | undefined;
    const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint: { every: 1000, hmacSecrets: [SECRET] }, hooks: { onCheckpoint: (r) => void (kept = r) } });
    for (let i = 0; i < 5; i++) log.emit("x", { i });
    log.checkpoint();
    await log.flush();
    const expectCheckpoint = kept!;
    expect(verifyAuditLog(lines, { expectCheckpoint })).toMatchObject({ ok: true });
    // Drop the checkpoint and the last two records: the chain alone still verifies.
    const cut = lines.slice(0, 3);
    expect(verifyAuditLog(cut).ok).toBe(true);
    expect(verifyAuditLog(cut, { expectCheckpoint })).toMatchObject({ ok: false, fault: "truncated", line: 3, seq: 3, message: expect.stringContaining("covers seq 1..5") });
    expect(verifyAuditLog([], { expectCheckpoint: { origin: "w1", size: 5, head: expectCheckpoint.checkpoint_head as string } })).toMatchObject({ ok: false, fault: "truncated", seq: null });
    const rewritten = rewriteFrom(lines.slice(0, 5), 1, (r) => ({ ...r, actor: "mallory" }));
    expect(verifyAuditLog(rewritten, { expectCheckpoint })).toMatchObject({ ok: false, fault: "checkpoint_mismatch", line: 5, seq: 5 });
  });

  it("reports a checkpoint whose size or head does not match the chain", async () => {
    const { sink, lines } = collector();
    const log = new AuditLog({ origin: "w1", sinks: [sink], checkpoint: { hmacSecrets: [SECRET] } });
    log.emit("x");
    log.emit("y");
    log.checkpoint();
    await log.flush();
    const bad = rewriteFrom(lines, 2, (r) => ({ ...r, checkpoint_size: 1 }));
    expect(verifyAuditLog(bad)).toMatchObject({ ok: false, fault: "checkpoint_mismatch", line: 3, seq: 3 });
  });

  it("requireSigned fails an origin without a verified checkpoint", () => {
    const log = new AuditLog({ origin: "w1" });
    const lines = [JSON.stringify(log.emit("x"))];
    expect(verifyAuditLog(lines, { hmacSecrets: [SECRET], requireSigned: true })).toMatchObject({ ok: false, fault: "unsigned", line: 1 });
    expect(() => verifyAuditLog(lines, { requireSigned: true })).toThrow(/requireSigned needs hmacSecrets or ed25519PublicKeys/);
  });

  it("rejects unusable checkpoint options with a clear message that never shows a secret", () => {
    expect(() => new AuditLog({ checkpoint: {} })).toThrow(/give hmacSecrets, ed25519PrivateKey or an external signer/);
    expect(() => new AuditLog({ checkpoint: { hmacSecrets: [] } })).toThrow(/non-empty array/);
    expect(() => new AuditLog({ checkpoint: { hmacSecrets: [SECRET], every: 0 } })).toThrow(/every must be a positive integer/);
    expect(() => new AuditLog({ checkpoint: { hmacSecrets: [SECRET], intervalSeconds: -1 } })).toThrow(/intervalSeconds/);
    expect(() => new AuditLog({ checkpoint: { ed25519PrivateKey: "not a pem" } })).toThrow(/cannot read the Ed25519 private key/);
    expect(() => new AuditLog({ checkpoint: { ed25519PrivateKey: ed.publicKey } })).toThrow(/expected an Ed25519 private key/);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
    expect(() => new AuditLog({ checkpoint: { ed25519PrivateKey: rsa } })).toThrow(/expected an Ed25519 private key, got private rsa/);
    expect(() => verifyAuditLog([], { expectCheckpoint: { origin: "w1" } })).toThrow(/expectCheckpoint: expected/);
    try {
      new AuditLog({ checkpoint: { hmacSecrets: [SECRET, ""] } });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toMatch(/hmacSecrets\[1\]/);
      expect((error as Error).message).not.toContain(SECRET);
    }
  });
});
