import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_MANIFEST_TTL_SECONDS, ManifestGate, fileManifest, manifestCanonical, signManifest, staticManifest } from "./manifest.ts";
import type { Logger } from "./logger.ts";
import type { ManifestGateOptions, ManifestRejection, ManifestSource, MembershipGate } from "./manifest.ts";

const SECRET = "manifest-s3cr3t-Never-Logged-42";
const OLD_SECRET = "manifest-old-s3cr3t-Never-Logged-17";

interface Captured {
  gate: ManifestGate;
  rejections: ManifestRejection[];
  logs: string[];
  changes: () => number;
}

function makeGate(options: Partial<ManifestGateOptions> = {}): Captured {
  const rejections: ManifestRejection[] = [];
  const logs: string[] = [];
  const record = (fields: object, message: string) => logs.push(`${message} ${JSON.stringify(fields)}`);
  const logger: Logger = { debug: record, info: record, warn: record, error: record };
  const gate = new ManifestGate({ secrets: [SECRET], logger, onRejected: (r) => rejections.push(r), clock: () => 5000, ...options });
  let count = 0;
  gate.subscribe(() => count++);
  return { gate, rejections, logs, changes: () => count };
}

function manifest(seq: number, versions: string[] = ["v2.0.0"], secret = SECRET, issuedAt = 1763800000.5) {
  return signManifest({ seq, activeVersions: versions, issuedAt, secret });
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  // A bound on waiting, not a timing assertion: fs events and polls arrive when they arrive.
  const deadline = Date.now() + 15_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function expectNoSecrets(texts: readonly string[], signatures: readonly string[] = []): void {
  for (const text of texts) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(OLD_SECRET);
    for (const signature of signatures) expect(text).not.toContain(signature);
  }
}

describe("signManifest", () => {
  it("produces the wire format with a 64-hex signature", () => {
    const m = manifest(3, ["v2.0.0", "v1.0.0"]);
    expect(m).toEqual({
      seq: 3,
      active_versions: ["v2.0.0", "v1.0.0"],
      issued_at: 1763800000.5,
      expires_at: 1763800000.5 + DEFAULT_MANIFEST_TTL_SECONDS,
      signature: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  });

  it("signs what Python signs (json.dumps + repr, versions in code-point order)", () => {
    const versions = ["v2", "v1", "\uffff-bmp", "😀-astral", "é"];
    const m = signManifest({ seq: 12, activeVersions: versions, issuedAt: 1e16, expiresAt: 2e16, secret: "kéy" });
    const script = [
      "import sys, json, hmac, hashlib",
      "seq, versions, t, e = json.loads(sys.stdin.read())",
      "c = json.dumps(['openrtc.manifest.v2', seq, sorted(versions), repr(float(t)), repr(float(e))], separators=(',', ':'))",
      "print(json.dumps([c, hmac.new('k\u00e9y'.encode(), c.encode(), hashlib.sha256).hexdigest()]))",
    ].join("\n");
    const [canonical, signature] = JSON.parse(
      execFileSync("python3", ["-c", script], { input: JSON.stringify([12, versions, 1e16, 2e16]), encoding: "utf8" }),
    ) as [string, string];
    expect(manifestCanonical(12, versions, 1e16, 2e16)).toBe(canonical);
    expect(m.signature).toBe(signature);
  });

  it.each([
    ["a negative seq", { seq: -1 }, /seq must be a non-negative integer/],
    ["a fractional seq", { seq: 1.5 }, /seq must be a non-negative integer/],
    ["a non-array version list", { activeVersions: "v1" }, /activeVersions must be an array/],
    ["an empty version", { activeVersions: ["v1", ""] }, /activeVersions\[1\] must be a non-empty string/],
    ["a duplicate version", { activeVersions: ["v1", "v1"] }, /"v1" twice/],
    ["a NaN issuedAt", { issuedAt: NaN }, /issuedAt must be a finite number/],
    ["an empty secret", { secret: "" }, /empty string/],
  ])("rejects %s", (_name, override, message) => {
    const options = { seq: 1, activeVersions: ["v1"], issuedAt: 1, secret: SECRET, ...override };
    expect(() => signManifest(options as never)).toThrow(message);
  });
});

describe("ManifestGate membership", () => {
  it("before any manifest no version is a member (fails closed by default), reason no_manifest", () => {
    const { gate } = makeGate();
    expect(gate.current).toBeNull();
    expect(gate.failOpen).toBe(false);
    expect(gate.isMember("v1.0.0")).toBe(false);
    expect(gate.isMember(null)).toBe(false);
    expect(gate.reason("v1.0.0")).toBe("no_manifest");
  });

  it("failOpen: true (or the deprecated requireManifest: false) makes every version a member without a manifest", () => {
    for (const options of [{ failOpen: true }, { requireManifest: false }]) {
      const { gate } = makeGate(options);
      expect(gate.isMember("v1.0.0")).toBe(true);
      expect(gate.reason("v1.0.0")).toBeUndefined();
      gate.offer(manifest(1, ["v2.0.0"]), "test");
      expect(gate.isMember("v1.0.0")).toBe(false);
      expect(gate.reason("v1.0.0")).toBe("not_member");
    }
  });

  it("with requireManifest no version is a member until a manifest arrives", () => {
    const { gate } = makeGate({ requireManifest: true });
    expect(gate.isMember("v2.0.0")).toBe(false);
    expect(gate.offer(manifest(1), "test")).toEqual({ accepted: true, changed: true });
    expect(gate.isMember("v2.0.0")).toBe(true);
  });

  it("a manifest makes exactly its versions members", () => {
    const { gate, changes } = makeGate();
    expect(gate.offer(manifest(1, ["v2.0.0", "v2.1.0"]), "test").accepted).toBe(true);
    expect(gate.isMember("v2.0.0")).toBe(true);
    expect(gate.isMember("v2.1.0")).toBe(true);
    expect(gate.isMember("v1.0.0")).toBe(false);
    expect(gate.isMember(null)).toBe(false);
    expect(gate.isMember(undefined)).toBe(false);
    expect(gate.current?.seq).toBe(1);
    expect(gate.currentSource).toBe("test");
    expect(gate.acceptedAt).toBe(5000);
    expect(changes()).toBe(1);
  });

  it("an empty signed version list makes no version a member", () => {
    const { gate } = makeGate();
    gate.offer(manifest(1, []), "test");
    expect(gate.isMember("v2.0.0")).toBe(false);
  });

  it("accepts JSON text and bytes as well as objects, with versions in any order", () => {
    const { gate } = makeGate();
    const m = manifest(1, ["b", "a"]);
    expect(gate.offer(JSON.stringify({ ...m, active_versions: ["a", "b"] }), "text").changed).toBe(true);
    expect(gate.offer(Buffer.from(JSON.stringify(manifest(2))), "bytes").changed).toBe(true);
    expect(gate.current?.seq).toBe(2);
  });

  it("the current manifest is frozen", () => {
    const { gate } = makeGate();
    gate.offer(manifest(1), "test");
    expect(Object.isFrozen(gate.current)).toBe(true);
    expect(Object.isFrozen(gate.current?.active_versions)).toBe(true);
  });

  it("implements MembershipGate for the pool", () => {
    const membership: MembershipGate = makeGate({ failOpen: true }).gate;
    expect(membership.isMember("v")).toBe(true);
  });
});

describe("ManifestGate replacement rules", () => {
  it("a higher seq replaces the current manifest", () => {
    const { gate, changes } = makeGate();
    gate.offer(manifest(1, ["v1"]), "test");
    expect(gate.offer(manifest(2, ["v2"]), "test")).toEqual({ accepted: true, changed: true });
    expect(gate.isMember("v1")).toBe(false);
    expect(gate.isMember("v2")).toBe(true);
    expect(changes()).toBe(2);
  });

  it("an older seq never replaces a newer one", () => {
    const { gate, rejections, changes } = makeGate();
    gate.offer(manifest(5, ["v2"]), "test");
    const result = gate.offer(manifest(4, ["v1"]), "replay");
    expect(result).toMatchObject({ accepted: false, changed: false, code: "stale_seq" });
    expect(rejections).toEqual([
      { source: "replay", code: "stale_seq", reason: "manifest seq 4 is older than the current seq 5", seq: 4, currentSeq: 5 },
    ]);
    expect(gate.isMember("v1")).toBe(false);
    expect(changes()).toBe(1);
  });

  it("an equal seq with different content is rejected", () => {
    const { gate, rejections } = makeGate();
    gate.offer(manifest(5, ["v2"]), "test");
    expect(gate.offer(manifest(5, ["v1"]), "test").code).toBe("conflicting_seq");
    expect(gate.offer(manifest(5, ["v2"], SECRET, 1), "test").code).toBe("conflicting_seq");
    expect(rejections.map((r) => r.code)).toEqual(["conflicting_seq", "conflicting_seq"]);
    expect(gate.current?.active_versions).toEqual(["v2"]);
  });

  it("the same manifest again is accepted as a no-op without notifying", () => {
    const { gate, rejections, changes } = makeGate();
    gate.offer(manifest(5), "test");
    expect(gate.offer(manifest(5), "test")).toEqual({ accepted: true, changed: false });
    expect(rejections).toEqual([]);
    expect(changes()).toBe(1);
  });

  it.each([
    ["missing signature", (m: Record<string, unknown>) => ({ ...m, signature: undefined }), "unsigned"],
    ["empty signature", (m: Record<string, unknown>) => ({ ...m, signature: "" }), "unsigned"],
    ["tampered version list", (m: Record<string, unknown>) => ({ ...m, active_versions: ["v1.0.0"] }), "bad_signature"],
    ["tampered seq", (m: Record<string, unknown>) => ({ ...m, seq: 99 }), "bad_signature"],
    ["tampered issued_at", (m: Record<string, unknown>) => ({ ...m, issued_at: 1 }), "bad_signature"],
    ["non-hex signature", (m: Record<string, unknown>) => ({ ...m, signature: "x".repeat(64) }), "malformed"],
    ["short signature", (m: Record<string, unknown>) => ({ ...m, signature: "abcd" }), "malformed"],
    ["uppercase signature", (m: Record<string, unknown>) => ({ ...m, signature: String(m.signature).toUpperCase() }), "malformed"],
    ["negative seq", (m: Record<string, unknown>) => ({ ...m, seq: -2 }), "malformed"],
    ["fractional seq", (m: Record<string, unknown>) => ({ ...m, seq: 2.5 }), "malformed"],
    ["string seq", (m: Record<string, unknown>) => ({ ...m, seq: "2" }), "malformed"],
    ["unsafe seq", (m: Record<string, unknown>) => ({ ...m, seq: 2 ** 60 }), "malformed"],
    ["versions not an array", (m: Record<string, unknown>) => ({ ...m, active_versions: "v2.0.0" }), "malformed"],
    ["non-string version", (m: Record<string, unknown>) => ({ ...m, active_versions: [2] }), "malformed"],
    ["duplicate versions", (m: Record<string, unknown>) => ({ ...m, active_versions: ["a", "a"] }), "malformed"],
    ["missing issued_at", (m: Record<string, unknown>) => ({ ...m, issued_at: undefined }), "malformed"],
  ])("rejects a manifest with %s and keeps the current one", (_name, mutate, code) => {
    const { gate, rejections, logs } = makeGate();
    const current = manifest(1, ["keep"]);
    gate.offer(current, "test");
    const offered = mutate({ ...manifest(2) } as Record<string, unknown>);
    const result = gate.offer(offered, "test");
    expect(result).toMatchObject({ accepted: false, changed: false, code });
    expect(rejections).toHaveLength(1);
    expect(rejections[0]!.code).toBe(code);
    expect(gate.current?.seq).toBe(1);
    expect(gate.isMember("keep")).toBe(true);
    expectNoSecrets([...logs, JSON.stringify(rejections), JSON.stringify(result)], [current.signature, manifest(2).signature]);
  });

  it.each([
    ["invalid JSON", '{"seq": 2, "active_', /not valid JSON .*torn or partial/],
    ["an empty file", "  \n", /empty .*torn or partial/],
    ["a JSON array", "[1,2]", /must be a JSON object/],
    ["JSON null", "null", /must be a JSON object/],
    ["a number", 42, /must be a JSON object/],
  ])("rejects %s as malformed", (_name, raw, reason) => {
    const { gate, rejections } = makeGate();
    const result = gate.offer(raw, "test");
    expect(result).toMatchObject({ accepted: false, code: "malformed", reason: expect.stringMatching(reason) });
    expect(rejections[0]?.reason).toMatch(reason);
    expect(gate.current).toBeNull();
  });

  it("a manifest signed with a secret the gate does not hold is rejected", () => {
    const { gate } = makeGate();
    expect(gate.offer(manifest(1, ["v2"], "some-other-secret"), "test").code).toBe("bad_signature");
    expect(gate.current).toBeNull();
  });

  it("accepts manifests signed with any configured secret (rotation)", () => {
    const { gate } = makeGate({ secrets: [SECRET, OLD_SECRET] });
    expect(gate.offer(manifest(1, ["a"], OLD_SECRET), "old").changed).toBe(true);
    expect(gate.offer(manifest(2, ["b"], SECRET), "new").changed).toBe(true);
  });

  it("the same content signed with the other rotation secret is an identical re-offer", () => {
    const { gate, rejections } = makeGate({ secrets: [SECRET, OLD_SECRET] });
    gate.offer(manifest(1, ["a"], OLD_SECRET), "old");
    expect(gate.offer(manifest(1, ["a"], SECRET), "new")).toEqual({ accepted: true, changed: false });
    expect(rejections).toEqual([]);
  });

  it("an invalid offer with a stale seq reports the signature problem, not the seq", () => {
    const { gate } = makeGate();
    gate.offer(manifest(5), "test");
    expect(gate.offer({ ...manifest(1), signature: undefined }, "test").code).toBe("unsigned");
  });
});

describe("ManifestGate listeners, logging and construction", () => {
  it("unsubscribe stops notifications", () => {
    const { gate } = makeGate();
    let calls = 0;
    const unsubscribe = gate.subscribe(() => calls++);
    gate.offer(manifest(1), "test");
    unsubscribe();
    gate.offer(manifest(2), "test");
    expect(calls).toBe(1);
  });

  it("a throwing listener neither breaks the offer nor other listeners", () => {
    const { gate, logs } = makeGate();
    let calls = 0;
    gate.subscribe(() => {
      throw new Error("listener boom");
    });
    gate.subscribe(() => calls++);
    expect(gate.offer(manifest(1), "test").changed).toBe(true);
    expect(calls).toBe(1);
    expect(logs.some((line) => line.includes("listener boom"))).toBe(true);
  });

  it("a throwing logger or onRejected does not escape offer", () => {
    const gate = new ManifestGate({
      secrets: [SECRET],
      logger: {
        debug: () => {},
        info: () => {},
        error: () => {},
        warn: () => {
          throw new Error("logger down");
        },
      },
      onRejected: () => {
        throw new Error("callback down");
      },
    });
    expect(gate.offer("garbage", "test")).toMatchObject({ accepted: false, code: "malformed" });
  });

  it("logs accepted changes at info and rejections at warn, never the secret or signature", () => {
    const { gate, logs } = makeGate({ secrets: [SECRET, OLD_SECRET] });
    const good = manifest(2, ["v2"]);
    gate.offer(good, "test");
    gate.offer(manifest(1, ["v1"]), "test");
    gate.offer(manifest(3, ["v3"], "wrong"), "test");
    gate.offer({ ...manifest(4), active_versions: ["x"] }, "test");
    gate.offer(JSON.stringify(manifest(5)).slice(0, 80), "test");
    expect(logs).toHaveLength(5);
    expect(logs[0]).toMatch(/^manifest accepted/);
    expectNoSecrets(logs, [good.signature, manifest(1, ["v1"]).signature, manifest(4).signature, manifest(5).signature]);
  });

  it.each([
    ["no secrets", { secrets: [] }, /non-empty array/],
    ["an empty secret", { secrets: [""] }, /secrets\[0\] is an empty string/],
    ["missing options", undefined, /secrets/],
  ])("constructor rejects %s", (_name, options, message) => {
    expect(() => new ManifestGate(options as never)).toThrow(message);
  });

  it("subscribe rejects a non-function", () => {
    expect(() => makeGate().gate.subscribe("x" as never)).toThrow(/must be a function/);
  });
});

describe("sources", () => {
  let dir: string;
  let gates: ManifestGate[] = [];

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "openrtc-manifest-"));
  });
  afterEach(() => {
    for (const gate of gates) gate.close();
    gates = [];
    rmSync(dir, { recursive: true, force: true });
  });

  function tracked(options: Partial<ManifestGateOptions> = {}): Captured {
    const captured = makeGate(options);
    gates.push(captured.gate);
    return captured;
  }

  function writeAtomic(file: string, content: string): void {
    const tmp = `${file}.tmp-${process.hrtime.bigint()}`;
    writeFileSync(tmp, content);
    renameSync(tmp, file);
  }

  it("staticManifest offers its manifest once at attach", () => {
    const { gate } = tracked();
    gate.attach(staticManifest(manifest(3, ["v3"]), { name: "baked" }));
    expect(gate.current?.seq).toBe(3);
    expect(gate.currentSource).toBe("baked");
  });

  it("a rejected static manifest is reported under the source's name", () => {
    const { gate, rejections } = tracked();
    gate.attach(staticManifest({ ...manifest(3), signature: "" }));
    expect(rejections).toMatchObject([{ source: "static", code: "unsigned" }]);
  });

  it("sources given at construction are attached in order", () => {
    const { gate } = tracked({ sources: [staticManifest(manifest(1)), staticManifest(manifest(2))] });
    expect(gate.current?.seq).toBe(2);
  });

  it("fileManifest reads the file synchronously at attach", () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1, ["v1"])));
    const { gate } = tracked();
    const source = gate.attach(fileManifest(file));
    expect(source.name).toBe(`file:${file}`);
    expect(gate.current?.seq).toBe(1);
    expect(gate.isMember("v1")).toBe(true);
  });

  it("picks up a file replaced at run time (atomic rename) through the directory watch", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1, ["v1"])));
    const { gate, changes } = tracked();
    // The poll is an hour away: only the watch can deliver this one.
    gate.attach(fileManifest(file, { pollIntervalMs: 3_600_000 }));
    writeAtomic(file, JSON.stringify(manifest(2, ["v2"])));
    await waitFor(() => gate.current?.seq === 2, "seq 2 from the rewritten file");
    expect(gate.isMember("v2")).toBe(true);
    expect(gate.isMember("v1")).toBe(false);
    expect(changes()).toBe(2);
  });

  it("picks up a Kubernetes ConfigMap update (the ..data symlink swapped to a new directory)", async () => {
    // The kubelet's layout: manifest.json -> ..data/manifest.json, ..data -> ..<timestamp>/; an
    // update writes a new timestamped directory and renames a fresh symlink over ..data.
    const publish = (name: string, content: string) => {
      mkdirSync(path.join(dir, name));
      writeFileSync(path.join(dir, name, "manifest.json"), content);
      symlinkSync(name, path.join(dir, "..data_tmp"));
      renameSync(path.join(dir, "..data_tmp"), path.join(dir, "..data"));
    };
    publish("..2026_11_22_08_00_00.1", JSON.stringify(manifest(1, ["v1"])));
    symlinkSync("..data/manifest.json", path.join(dir, "manifest.json"));
    const { gate } = tracked();
    gate.attach(fileManifest(path.join(dir, "manifest.json"), { pollIntervalMs: 50 }));
    expect(gate.current?.seq).toBe(1);
    publish("..2026_11_22_08_05_00.2", JSON.stringify(manifest(2, ["v2"])));
    await waitFor(() => gate.current?.seq === 2, "seq 2 after the ..data swap");
    expect(gate.isMember("v2")).toBe(true);
  });

  it("picks up a change by polling alone when watching is off", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1)));
    const { gate } = tracked();
    gate.attach(fileManifest(file, { pollIntervalMs: 20, watch: false }));
    writeAtomic(file, JSON.stringify(manifest(2)));
    await waitFor(() => gate.current?.seq === 2, "seq 2 by polling");
  });

  it("a torn write is rejected, the old manifest kept, and the completed write then accepted", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1, ["v1"])));
    const { gate, rejections } = tracked();
    gate.attach(fileManifest(file, { pollIntervalMs: 20 }));
    const next = JSON.stringify(manifest(2, ["v2"]));
    writeFileSync(file, next.slice(0, Math.floor(next.length / 2)));
    await waitFor(() => rejections.some((r) => /not valid JSON/.test(r.reason)), "the torn write's rejection");
    expect(gate.current?.seq).toBe(1);
    expect(gate.isMember("v1")).toBe(true);
    expect(rejections.every((r) => r.code === "malformed" && r.source === `file:${file}`)).toBe(true);
    writeFileSync(file, next);
    await waitFor(() => gate.current?.seq === 2, "the completed write");
  });

  it("an unchanged file is not re-offered on every poll", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify({ ...manifest(1), signature: "" }));
    const { gate, rejections } = tracked();
    gate.attach(fileManifest(file, { pollIntervalMs: 5, watch: false }));
    // Let several polls pass, then prove they stayed quiet by making a change observable.
    await new Promise((resolve) => setTimeout(resolve, 60));
    writeAtomic(file, JSON.stringify(manifest(2)));
    await waitFor(() => gate.current?.seq === 2, "seq 2");
    expect(rejections.map((r) => r.code)).toEqual(["unsigned"]);
  });

  it("a missing file is reported once as unreadable, and its later appearance is picked up", async () => {
    const file = path.join(dir, "later.json");
    const { gate, rejections } = tracked({ requireManifest: true });
    gate.attach(fileManifest(file, { pollIntervalMs: 20 }));
    expect(rejections).toEqual([{ source: `file:${file}`, code: "unreadable", reason: expect.stringMatching(/ENOENT/) }]);
    expect(gate.isMember("v2.0.0")).toBe(false);
    writeAtomic(file, JSON.stringify(manifest(1)));
    await waitFor(() => gate.current !== null, "the file to appear");
    expect(gate.isMember("v2.0.0")).toBe(true);
    expect(rejections).toHaveLength(1);
  });

  it("a file removed at run time keeps the current manifest", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1)));
    const { gate, rejections } = tracked();
    gate.attach(fileManifest(file, { pollIntervalMs: 20 }));
    rmSync(file);
    await waitFor(() => rejections.some((r) => r.code === "unreadable"), "the removal to be noticed");
    expect(gate.current?.seq).toBe(1);
  });

  it("after close, file changes are ignored", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1)));
    const { gate } = tracked();
    const source = gate.attach(fileManifest(file, { pollIntervalMs: 10 }));
    source.close();
    source.close();
    writeAtomic(file, JSON.stringify(manifest(2)));
    // A second gate on the same file proves the write is visible; the closed one must not see it.
    const witness = tracked().gate;
    witness.attach(fileManifest(file, { pollIntervalMs: 10 }));
    expect(witness.current?.seq).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(gate.current?.seq).toBe(1);
  });

  it("attach after gate.close throws, and a source starts only once", () => {
    const { gate } = tracked();
    const source = fileManifest(path.join(dir, "m.json"));
    gate.attach(source);
    expect(() => tracked().gate.attach(source)).toThrow(/already started/);
    gate.close();
    expect(() => gate.attach(staticManifest(manifest(1)))).toThrow(/closed/);
  });

  it.each([
    ["an empty path", "", {}, /non-empty string/],
    ["a zero poll interval", "m.json", { pollIntervalMs: 0 }, /pollIntervalMs/],
    ["a NaN poll interval", "m.json", { pollIntervalMs: NaN }, /pollIntervalMs/],
  ])("fileManifest rejects %s", (_name, file, options, message) => {
    expect(() => fileManifest(file, options)).toThrow(message);
  });

  it("a custom source's unreadable report reaches onRejected", () => {
    const { gate, rejections } = tracked();
    const source: ManifestSource = { name: "custom", start: (sink) => sink.unreadable("api down"), close: () => {} };
    gate.attach(source);
    expect(rejections).toEqual([{ source: "custom", code: "unreadable", reason: "api down" }]);
  });

  it("an attached file source does not keep the process alive", async () => {
    const file = path.join(dir, "manifest.json");
    writeFileSync(file, JSON.stringify(manifest(1, ["v1"], SECRET, Date.now() / 1000)));
    const moduleUrl = new URL("./manifest.ts", import.meta.url).href;
    const script = [
      `import { ManifestGate, fileManifest } from ${JSON.stringify(moduleUrl)};`,
      `const gate = new ManifestGate({ secrets: [${JSON.stringify(SECRET)}] });`,
      `gate.attach(fileManifest(${JSON.stringify(file)}, { pollIntervalMs: 10 }));`,
      `console.log(gate.isMember("v1") ? "member" : "not member");`,
    ].join("\n");
    const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`child still alive: the source keeps the event loop busy\n${output}`));
      }, 20_000);
      child.on("exit", (exitCode) => {
        clearTimeout(timer);
        resolve(exitCode);
      });
    });
    expect({ code, output: output.trim() }).toEqual({ code: 0, output: "member" });
  });
});

describe("ManifestGate: expiry, state file, minSeq, GET /manifest status", () => {
  let stateDir: string;
  beforeEach(() => {
    stateDir = mkdtempSync(path.join(tmpdir(), "openrtc-manifest-state-"));
  });
  afterEach(() => {
    rmSync(stateDir, { recursive: true, force: true });
  });

  function signed(seq: number, versions: string[], issuedAt: number, expiresAt?: number) {
    return signManifest({ seq, activeVersions: versions, issuedAt, ...(expiresAt === undefined ? {} : { expiresAt }), secret: SECRET });
  }

  it("a manifest without expires_at, or with expires_at not after issued_at, is malformed", () => {
    const { gate, rejections } = makeGate();
    const { expires_at: _dropped, ...withoutExpiry } = signed(1, ["v1"], 4000);
    expect(gate.offer(withoutExpiry, "t")).toMatchObject({ accepted: false, code: "malformed" });
    expect(rejections[0]?.reason).toMatch(/expires_at is missing/);
    expect(() => signed(1, ["v1"], 4000, 4000)).toThrow(/expiresAt must be later than issuedAt/);
    expect(gate.offer({ ...signed(1, ["v1"], 4000), expires_at: 3000 }, "t")).toMatchObject({ code: "malformed" });
  });

  it("expires_at is signed: moving it forward breaks the signature", () => {
    const { gate } = makeGate();
    const m = signed(1, ["v1"], 4000, 6000);
    expect(gate.offer({ ...m, expires_at: 9e9 }, "t")).toMatchObject({ accepted: false, code: "bad_signature" });
  });

  it("an already expired manifest is refused (expired); the current one stays", () => {
    const { gate, rejections } = makeGate();
    gate.offer(signed(1, ["v1"], 4000, 9000), "t");
    expect(gate.offer(signed(2, ["v2"], 1000, 4999), "t")).toMatchObject({ accepted: false, code: "expired" });
    expect(rejections.at(-1)).toMatchObject({ code: "expired", seq: 2, currentSeq: 1 });
    expect(gate.isMember("v1")).toBe(true);
  });

  it("the current manifest stops counting once the clock passes expires_at; subscribers are told; a newer one restores it", () => {
    let now = 5000;
    const { gate, changes } = makeGate({ clock: () => now });
    gate.offer(signed(1, ["v1"], 4000, 5100), "t");
    expect(changes()).toBe(1);
    now = 5100;
    expect(gate.isMember("v1")).toBe(false);
    expect(gate.reason("v1")).toBe("manifest_expired");
    gate.refresh();
    expect(changes()).toBe(2);
    expect(gate.status()).toMatchObject({ state: "expired", seq: 1 });
    gate.offer(signed(2, ["v1"], 5100, 9000), "t");
    expect(gate.isMember("v1")).toBe(true);
    expect(changes()).toBe(3);
  });

  it("with failOpen an expired manifest counts as none: every version is a member again", () => {
    let now = 5000;
    const { gate } = makeGate({ clock: () => now, failOpen: true });
    gate.offer(signed(1, ["v2"], 4000, 5100), "t");
    expect(gate.isMember("v1")).toBe(false);
    now = 6000;
    expect(gate.isMember("v1")).toBe(true);
  });

  it("the expiry timer tells subscribers by itself (real clock)", async () => {
    const gate = new ManifestGate({ secrets: [SECRET], logger: { debug() {}, info() {}, warn() {}, error() {} } });
    let told = 0;
    gate.subscribe(() => told++);
    const now = Date.now() / 1000;
    gate.offer(signed(1, ["v1"], now - 1, now + 0.05), "t");
    await waitFor(() => told === 2, "the expiry notification");
    expect(gate.reason("v1")).toBe("manifest_expired");
    gate.close();
  });

  it("status() shows seq, versions, issued/expiry times and source, never the signature", () => {
    const { gate } = makeGate({ minSeq: 3 });
    expect(gate.status()).toEqual({
      state: "none",
      seq: null,
      active_versions: null,
      issued_at: null,
      expires_at: null,
      source: null,
      accepted_at: null,
      fail_open: false,
      min_seq: 3,
    });
    const m = signed(4, ["v1", "v2"], 4000, 9000);
    gate.offer(m, "file:/etc/m.json");
    const status = gate.status();
    expect(status).toEqual({
      state: "active",
      seq: 4,
      active_versions: ["v1", "v2"],
      issued_at: 4000,
      expires_at: 9000,
      source: "file:/etc/m.json",
      accepted_at: 5000,
      fail_open: false,
      min_seq: 4,
    });
    expect(JSON.stringify(status)).not.toContain(m.signature);
  });

  it("minSeq refuses anything below it", () => {
    const { gate, rejections } = makeGate({ minSeq: 5 });
    expect(gate.offer(signed(4, ["v1"], 4000), "t")).toMatchObject({ accepted: false, code: "stale_seq" });
    expect(rejections[0]?.reason).toMatch(/lowest acceptable seq 5/);
    expect(gate.offer(signed(5, ["v1"], 4000), "t").accepted).toBe(true);
  });

  it("minSeq must be a non-negative integer", () => {
    expect(() => makeGate({ minSeq: -1 })).toThrow(/minSeq must be a non-negative integer/);
  });

  it("the state file persists the highest seq: a restarted gate refuses older, re-accepts the same, refuses a different one at that seq", () => {
    const stateFile = path.join(stateDir, "state.json");
    const first = makeGate({ stateFile }).gate;
    const seven = signed(7, ["v2"], 4000);
    expect(first.offer(seven, "t").accepted).toBe(true);
    const text = readFileSync(stateFile, "utf8");
    expect(JSON.parse(text)).toMatchObject({ format: "openrtc.manifest-state.v1", seq: 7, digest: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(text).not.toContain(seven.signature);
    expect(statSync(stateFile).mode & 0o777).toBe(0o600);

    const restarted = makeGate({ stateFile });
    expect(restarted.gate.offer(signed(1, ["v1"], 1577836800), "t")).toMatchObject({ accepted: false, code: "stale_seq" });
    expect(restarted.gate.offer(signed(7, ["v1"], 4000), "t")).toMatchObject({ accepted: false, code: "conflicting_seq" });
    expect(restarted.gate.offer(seven, "t")).toMatchObject({ accepted: true, changed: true });
    expect(restarted.gate.isMember("v2")).toBe(true);
    expect(restarted.gate.offer(signed(8, ["v3"], 4000), "t").accepted).toBe(true);
    expect(JSON.parse(readFileSync(stateFile, "utf8")).seq).toBe(8);
  });

  it("a corrupt or foreign state file is an error at construction that says what to do", () => {
    const stateFile = path.join(stateDir, "state.json");
    writeFileSync(stateFile, "{not json");
    expect(() => makeGate({ stateFile })).toThrow(/not a manifest state file .* delete it to start over/);
    writeFileSync(stateFile, JSON.stringify({ format: "openrtc.manifest-state.v1", seq: -3, digest: "x" }));
    expect(() => makeGate({ stateFile })).toThrow(/not a manifest state file/);
  });

  it("a state file that cannot be written does not refuse the authentic newer manifest; the error is logged", () => {
    const stateFile = path.join(stateDir, "missing-dir", "state.json");
    const { gate, logs } = makeGate({ stateFile });
    expect(gate.offer(signed(1, ["v1"], 4000), "t").accepted).toBe(true);
    expect(logs.some((l) => l.includes("could not write the manifest state file"))).toBe(true);
  });

  it("rejections before the first rejection subscriber are kept (bounded) and delivered on subscribe", () => {
    const { gate } = makeGate();
    for (let i = 0; i < 20; i++) gate.offer("garbage", `s${i}`);
    const seen: string[] = [];
    gate.subscribeRejections((r) => seen.push(r.source));
    expect(seen).toHaveLength(16);
    expect(seen[0]).toBe("s4");
    gate.offer("garbage", "later");
    expect(seen.at(-1)).toBe("later");
  });

  it("an offered object with throwing getters is malformed, never a throw", () => {
    const { gate } = makeGate();
    const hostile = Object.defineProperty({}, "seq", {
      enumerable: true,
      get() {
        throw new Error("getter boom");
      },
    });
    expect(gate.offer(hostile, "t")).toMatchObject({ accepted: false, code: "malformed" });
  });
});
