import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MembershipError,
  MembershipVerifier,
  membershipCanonical,
  pythonFloatRepr,
  pythonJsonString,
  signMembership,
} from "./membership.ts";
import type { MembershipClaim } from "./membership.ts";

interface Vector {
  version: string;
  worker_id: string;
  timestamp: number;
  secret: string;
  token: string;
  canonical: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../..");
const localVectorsPath = path.join(here, "testdata/membership-vectors.json");
const sharedVectorsPath = path.resolve(repoRoot, "../shared/testdata/membership-vectors.json");
const vectors = JSON.parse(readFileSync(localVectorsPath, "utf8")) as Vector[];

const SECRET = "s3cr3t-Do-Not-Leak-7f1e";
const OLD_SECRET = "old-s3cr3t-Do-Not-Leak-99aa";

function claim(overrides: Partial<MembershipClaim> = {}, secret = SECRET): MembershipClaim {
  const base = { version: "v2.0.0", workerId: "w-1", timestamp: 1000.5 };
  const merged = { ...base, ...overrides };
  return { token: signMembership({ ...merged, secret }), ...merged, ...overrides };
}

function failure(verifier: MembershipVerifier, c: MembershipClaim): MembershipError {
  try {
    verifier.verify(c);
  } catch (error) {
    expect(error).toBeInstanceOf(MembershipError);
    expect(verifier.isValid(c)).toBe(false);
    return error as MembershipError;
  }
  throw new Error("expected verify to throw");
}

describe("membership vectors (openrtc-python)", () => {
  it("has vectors to check", () => {
    expect(vectors.length).toBeGreaterThanOrEqual(7);
  });

  it.each(vectors.map((v) => [v.canonical, v] as const))("reproduces %s", (_name, v) => {
    expect(membershipCanonical(v.version, v.worker_id, v.timestamp)).toBe(v.canonical);
    expect(signMembership({ version: v.version, workerId: v.worker_id, timestamp: v.timestamp, secret: v.secret })).toBe(v.token);
    const verifier = new MembershipVerifier({ secrets: [v.secret], expectedVersion: v.version, clock: () => v.timestamp });
    expect(() => verifier.verify({ token: v.token, version: v.version, workerId: v.worker_id, timestamp: v.timestamp })).not.toThrow();
  });

  it.runIf(existsSync(sharedVectorsPath))("the package copy is identical to the shared vectors", () => {
    expect(readFileSync(localVectorsPath)).toEqual(readFileSync(sharedVectorsPath));
  });
});

describe("pythonFloatRepr", () => {
  it.each([
    [1000, "1000.0"],
    [1700000000.123, "1700000000.123"],
    [0, "0.0"],
    [-0, "-0.0"],
    [0.1, "0.1"],
    [-1.5, "-1.5"],
    [1e16, "1e+16"],
    [9999999999999998, "9999999999999998.0"],
    [1e15, "1000000000000000.0"],
    [1e-4, "0.0001"],
    [1e-5, "1e-05"],
    [1.5e-7, "1.5e-07"],
    [1e21, "1e+21"],
    [1.2345e300, "1.2345e+300"],
    [5e-324, "5e-324"],
  ])("repr(%s) = %s", (value, expected) => {
    expect(pythonFloatRepr(value)).toBe(expected);
  });

  it.each([NaN, Infinity, -Infinity])("rejects %s", (value) => {
    expect(() => pythonFloatRepr(value)).toThrow(/finite number/);
  });
});

describe("pythonJsonString", () => {
  it.each([
    ["plain", '"plain"'],
    ['w"q"', '"w\\"q\\""'],
    ["a\\b", '"a\\\\b"'],
    ["\n\r\t\b\f", '"\\n\\r\\t\\b\\f"'],
    ["\u0000\u001f\u007f", '"\\u0000\\u001f\\u007f"'],
    ["é", '"\\u00e9"'],
    ["😀", '"\\ud83d\\ude00"'],
    ["/", '"/"'],
  ])("escapes %j like Python", (value, expected) => {
    expect(pythonJsonString(value)).toBe(expected);
  });
});

describe("agreement with python3 on random inputs", () => {
  it("canonical message, repr and token match Python for a batch", () => {
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    const text = fc.oneof(
      fc.string(),
      fc.string({ unit: "binary" }),
      fc.string({ unit: codeUnit }), // lone surrogates included
    );
    const float = fc.oneof(
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.double({ min: 1e9, max: 2e9, noNaN: true }),
      fc.integer({ min: -(2 ** 53), max: 2 ** 53 }).map(Number),
    );
    const edges = [0, -0, 1e16, 9999999999999998, 1e-4, 9.999999999999999e-5, 1e-5, 5e-324, Number.MAX_VALUE, 1e21, 1e22, 0.1, 1 / 3];
    const samples = fc.sample(fc.tuple(text, text, float), { seed: 20261122, numRuns: 400 });
    for (const edge of edges) samples.push(["v", "w", edge]);

    const toHex = (x: number) => {
      const buf = Buffer.alloc(8);
      buf.writeDoubleBE(x);
      return buf.toString("hex");
    };
    const input = JSON.stringify(samples.map(([v, w, t]) => [v, w, toHex(t)]));
    const script = [
      "import sys, json, struct, hmac, hashlib",
      "out = []",
      "for v, w, h in json.loads(sys.stdin.read()):",
      "    t = struct.unpack('>d', bytes.fromhex(h))[0]",
      "    c = json.dumps([v, w, repr(t)], separators=(',', ':'))",
      "    out.append([repr(t), c, hmac.new('k\u00e9y'.encode(), c.encode(), hashlib.sha256).hexdigest()])",
      "print(json.dumps(out))",
    ].join("\n");
    const expected = JSON.parse(execFileSync("python3", ["-c", script], { input, encoding: "utf8" })) as [string, string, string][];
    expect(expected).toHaveLength(samples.length);
    samples.forEach(([v, w, t], i) => {
      const [repr, canonical, token] = expected[i]!;
      expect({ i, repr: pythonFloatRepr(t) }).toEqual({ i, repr });
      expect({ i, canonical: membershipCanonical(v, w, t) }).toEqual({ i, canonical });
      expect({ i, token: signMembership({ version: v, workerId: w, timestamp: t, secret: "kéy" }) }).toEqual({ i, token });
    });
  });
});

describe("sign → verify roundtrip", () => {
  it("verifies whatever it signed, and rejects any changed field", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary" }),
        fc.string({ unit: "binary" }),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.string({ unit: "binary", minLength: 1 }),
        (version, workerId, timestamp, secret) => {
          const token = signMembership({ version, workerId, timestamp, secret });
          const verifier = new MembershipVerifier({ secrets: [secret], clock: () => timestamp });
          expect(verifier.isValid({ token, version, workerId, timestamp })).toBe(true);
          expect(verifier.isValid({ token, version: `${version}x`, workerId, timestamp })).toBe(false);
          expect(verifier.isValid({ token, version, workerId: `${workerId}x`, timestamp })).toBe(false);
        },
      ),
      { seed: 7, numRuns: 300 },
    );
  });
});

describe("MembershipVerifier failures", () => {
  const verifier = new MembershipVerifier({ secrets: [SECRET], expectedVersion: "v2.0.0", maxAgeSeconds: 300, clock: () => 1000 });

  it("accepts a fresh token for the expected version", () => {
    const c = claim();
    expect(() => verifier.verify(c)).not.toThrow();
    expect(verifier.isValid(c)).toBe(true);
  });

  it("accepts exactly maxAgeSeconds of skew both ways", () => {
    expect(verifier.isValid(claim({ timestamp: 700 }))).toBe(true);
    expect(verifier.isValid(claim({ timestamp: 1300 }))).toBe(true);
  });

  it("bad_signature: a token signed with another secret", () => {
    expect(failure(verifier, claim({}, "other-secret")).code).toBe("bad_signature");
  });

  it("bad_signature: a tampered worker id", () => {
    const c = claim();
    expect(failure(verifier, { ...c, workerId: "w-2" }).code).toBe("bad_signature");
  });

  it("bad_signature: one hex digit changed", () => {
    const c = claim();
    const flipped = c.token.slice(0, 63) + (c.token[63] === "0" ? "1" : "0");
    expect(failure(verifier, { ...c, token: flipped }).code).toBe("bad_signature");
  });

  it("malformed: the right digest in uppercase (signers write lowercase, as Python's hexdigest)", () => {
    const c = claim();
    expect(failure(verifier, { ...c, token: c.token.toUpperCase() }).code).toBe("malformed");
  });

  it("malformed: a non-ASCII character whose low byte equals the right hex digit does not alias it", () => {
    const c = claim();
    const alias = String.fromCharCode(0x100 + c.token.charCodeAt(0)) + c.token.slice(1);
    expect(failure(verifier, { ...c, token: alias }).code).toBe("malformed");
  });

  it("stale: older than maxAgeSeconds", () => {
    const error = failure(verifier, claim({ timestamp: 699.9 }));
    expect(error.code).toBe("stale");
    expect(error.message).toMatch(/maxAgeSeconds=300/);
  });

  it("future: further ahead than maxAgeSeconds", () => {
    const error = failure(verifier, claim({ timestamp: 1300.1 }));
    expect(error.code).toBe("future");
    expect(error.message).toMatch(/clock skew/);
  });

  it("future: a millisecond or microsecond timestamp is named as such, with the fix", () => {
    const realClock = new MembershipVerifier({ secrets: [SECRET], clock: () => 1_790_000_000 });
    const ms = failure(realClock, claim({ timestamp: 1_790_000_000_123 }));
    expect(ms.code).toBe("future");
    expect(ms.message).toMatch(/looks like milliseconds \(Date\.now\(\)\): pass Unix seconds, Date\.now\(\) \/ 1000/);
    const us = failure(realClock, claim({ timestamp: 1_790_000_000_123_456 }));
    expect(us.message).toMatch(/looks like microseconds/);
  });

  it("version_mismatch: a valid token for another version", () => {
    const error = failure(verifier, claim({ version: "v1.0.0" }));
    expect(error.code).toBe("version_mismatch");
    expect(error.message).toContain('"v1.0.0"');
  });

  it("without expectedVersion any version passes", () => {
    const any = new MembershipVerifier({ secrets: [SECRET], clock: () => 1000 });
    expect(any.isValid(claim({ version: "v9" }))).toBe(true);
  });

  it.each([
    ["short token", { token: "abcd" }],
    ["long token", { token: "a".repeat(66) }],
    ["non-hex token", { token: "z".repeat(64) }],
    ["non-string token", { token: 42 }],
    ["numeric version", { version: 2 }],
    ["null worker id", { workerId: null }],
    ["NaN timestamp", { timestamp: NaN }],
    ["infinite timestamp", { timestamp: Infinity }],
    ["string timestamp", { timestamp: "1000" }],
  ])("malformed: %s", (_name, override) => {
    const c = { ...claim(), ...override } as unknown as MembershipClaim;
    expect(failure(verifier, c).code).toBe("malformed");
  });

  it("malformed: a claim that is not an object", () => {
    expect(failure(verifier, null as unknown as MembershipClaim).code).toBe("malformed");
  });
});

describe("verifier prefix cache", () => {
  it("stays correct past its bound and never mixes versions or workers", () => {
    const verifier = new MembershipVerifier({ secrets: [SECRET], clock: () => 1000 });
    for (let i = 0; i < 5000; i++) {
      expect(verifier.isValid(claim({ workerId: `w-${i}`, version: `v${i % 3}` }))).toBe(true);
    }
    expect(verifier.isValid(claim({ workerId: "w-0", version: "v0" }))).toBe(true);
    // Same worker, other version: the token for v0 must not pass as v1 and vice versa.
    const forV0 = claim({ workerId: "w-1", version: "v0" });
    expect(verifier.isValid({ ...forV0, version: "v1" })).toBe(false);
    expect(verifier.isValid(claim({ workerId: "w-1", version: "v1" }))).toBe(true);
    // A worker id whose escaping matters, cached then reused.
    const odd = claim({ workerId: 'w"\n\u00e9' });
    expect(verifier.isValid(odd)).toBe(true);
    expect(verifier.isValid({ ...odd, workerId: "w" })).toBe(false);
    expect(verifier.isValid(odd)).toBe(true);
  });
});

describe("secret rotation", () => {
  const rotating = new MembershipVerifier({ secrets: [SECRET, OLD_SECRET], clock: () => 1000 });

  it("accepts tokens signed with the new or the old secret", () => {
    expect(rotating.isValid(claim({}, SECRET))).toBe(true);
    expect(rotating.isValid(claim({}, OLD_SECRET))).toBe(true);
  });

  it("rejects a token signed with neither", () => {
    expect(failure(rotating, claim({}, "third")).code).toBe("bad_signature");
  });

  it("after dropping the old secret, its tokens fail", () => {
    const rotated = new MembershipVerifier({ secrets: [SECRET], clock: () => 1000 });
    expect(failure(rotated, claim({}, OLD_SECRET)).code).toBe("bad_signature");
  });
});

describe("construction and signing errors", () => {
  it.each([
    ["no secrets", { secrets: [] }, /non-empty array/],
    ["secrets not an array", { secrets: SECRET }, /non-empty array/],
    ["an empty-string secret", { secrets: [SECRET, ""] }, /secrets\[1\] is an empty string/],
    ["a non-string secret", { secrets: [5] }, /secrets\[0\] must be a string/],
    ["zero maxAgeSeconds", { secrets: [SECRET], maxAgeSeconds: 0 }, /maxAgeSeconds/],
    ["NaN maxAgeSeconds", { secrets: [SECRET], maxAgeSeconds: NaN }, /maxAgeSeconds/],
    ["empty expectedVersion", { secrets: [SECRET], expectedVersion: "" }, /expectedVersion/],
  ])("rejects %s", (_name, options, message) => {
    expect(() => new MembershipVerifier(options as never)).toThrow(message);
  });

  it("rejects a missing options object", () => {
    expect(() => new MembershipVerifier(undefined as never)).toThrow(/secrets/);
  });

  it.each([
    ["NaN timestamp", { timestamp: NaN }, /finite number/],
    ["infinite timestamp", { timestamp: -Infinity }, /finite number/],
    ["empty secret", { secret: "" }, /empty string/],
    ["non-string version", { version: 1 }, /version must be a string/],
    ["non-string worker id", { workerId: undefined }, /workerId must be a string/],
  ])("signMembership rejects %s", (_name, override, message) => {
    const options = { version: "v1", workerId: "w", timestamp: 1, secret: SECRET, ...override };
    expect(() => signMembership(options as never)).toThrow(message);
  });
});

describe("secrets never leak", () => {
  it("no error message or property mentions a secret", () => {
    const verifier = new MembershipVerifier({ secrets: [SECRET, OLD_SECRET], expectedVersion: "v2.0.0", clock: () => 1000 });
    const texts: string[] = [];
    const cases: unknown[] = [
      claim({}, "wrong"),
      claim({ timestamp: 1 }),
      claim({ timestamp: 5000 }),
      claim({ version: "v3" }),
      { ...claim(), token: SECRET },
      { ...claim(), workerId: 7 },
    ];
    for (const c of cases) {
      try {
        verifier.verify(c as MembershipClaim);
      } catch (error) {
        texts.push(String(error), JSON.stringify(error), (error as Error).stack ?? "");
      }
    }
    for (const options of [{ secrets: [SECRET, ""] }, { secrets: [SECRET], maxAgeSeconds: -1 }]) {
      try {
        new MembershipVerifier(options);
      } catch (error) {
        texts.push(String(error), (error as Error).stack ?? "");
      }
    }
    expect(texts.length).toBeGreaterThanOrEqual(8);
    for (const text of texts) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(OLD_SECRET);
    }
  });
});
