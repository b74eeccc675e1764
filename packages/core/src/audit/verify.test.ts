import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { AuditLog } from "./log.ts";
import { computeRecordHash } from "./hash.ts";
import { AuditVerifier, verifyAuditLog } from "./verify.ts";

type Rec = Record<string, unknown> & { seq: number; origin: string; hash: string; prev_hash: string };

/** A log of `origins.length` records; record i comes from origin `o<origins[i]>`. */
function makeLog(origins: readonly number[]): string[] {
  const logs = new Map<number, AuditLog>();
  return origins.map((o, i) => {
    let log = logs.get(o);
    if (!log) {
      log = new AuditLog({ origin: `o${o}`, clock: () => 1000 + i, version: "v1" });
      logs.set(o, log);
    }
    return JSON.stringify(log.emit("deployment.started", { i, note: `record ${i}` }));
  });
}

const parse = (line: string) => JSON.parse(line) as Rec;
const rehash = (r: Rec): string => JSON.stringify({ ...r, hash: computeRecordHash(r) });
/** Index of the next line of the same origin after `i`, or -1. */
function nextOfOrigin(lines: readonly string[], i: number): number {
  const origin = parse(lines[i]!).origin;
  for (let j = i + 1; j < lines.length; j++) if (parse(lines[j]!).origin === origin) return j;
  return -1;
}

const logArb = fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 2, maxLength: 40 });

describe("verifyAuditLog", () => {
  it("accepts an intact log with interleaved origins and a trailing blank line", () => {
    const lines = makeLog([0, 1, 0, 2, 1, 0]);
    const result = verifyAuditLog([...lines, ""]);
    expect(result).toMatchObject({ ok: true, records: 6, origins: 3 });
    expect(result.ok && result.chains.map((c) => [c.origin, c.records, c.lastSeq])).toEqual([["o0", 3, 3], ["o1", 2, 2], ["o2", 1, 1]]);
    expect(verifyAuditLog(`${lines.join("\n")}\n`)).toMatchObject({ ok: true, records: 6 });
    expect(verifyAuditLog([])).toEqual({ ok: true, records: 0, origins: 0, chains: [] });
  });

  it("accepts an async iterable; CRLF and reformatted whitespace are edits (bytes, not parsed values, are verified)", async () => {
    const lines = makeLog([0, 0, 0]);
    async function* gen(mangle: 0 | 1) {
      yield mangle === 0 ? `${lines[0]!}\r` : lines[0]!;
      yield mangle === 1 ? lines[1]!.replace(/,"/g, ', "') : lines[1]!;
      yield lines[2]!;
    }
    async function* intact() {
      yield* lines;
    }
    await expect(verifyAuditLog(intact())).resolves.toMatchObject({ ok: true, records: 3 });
    await expect(verifyAuditLog(gen(0))).resolves.toMatchObject({ ok: false, fault: "edited", line: 1 });
    await expect(verifyAuditLog(gen(1))).resolves.toMatchObject({ ok: false, fault: "edited", line: 2 });
  });

  it("property: any intact log verifies", () => {
    fc.assert(fc.property(logArb, (origins) => {
      expect(verifyAuditLog(makeLog(origins))).toMatchObject({ ok: true, records: origins.length });
    }));
  });

  it("property: an edited record is reported as edited at its line", () => {
    fc.assert(fc.property(logArb, fc.nat(), (origins, pick) => {
      const lines = makeLog(origins);
      const i = pick % lines.length;
      lines[i] = lines[i]!.replace(/"note":"record \d+"/, '"note":"forged"');
      expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "edited", line: i + 1, seq: parse(lines[i]!).seq });
    }));
  });

  it("property: a deleted record is reported as a gap where the seq jumps", () => {
    fc.assert(fc.property(logArb, fc.nat(), (origins, pick) => {
      const lines = makeLog(origins);
      const candidates = lines.map((_, i) => i).filter((i) => nextOfOrigin(lines, i) !== -1);
      fc.pre(candidates.length > 0);
      const i = candidates[pick % candidates.length]!;
      const j = nextOfOrigin(lines, i);
      lines.splice(i, 1);
      expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "gap", line: j, seq: parse(lines[j - 1]!).seq });
    }));
  });

  it("property: two records of an origin swapped are reported as a reorder at the first", () => {
    fc.assert(fc.property(logArb, fc.nat(), (origins, pick) => {
      const lines = makeLog(origins);
      const candidates = lines.map((_, i) => i).filter((i) => nextOfOrigin(lines, i) !== -1);
      fc.pre(candidates.length > 0);
      const i = candidates[pick % candidates.length]!;
      const j = nextOfOrigin(lines, i);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "reorder", line: i + 1 });
    }));
  });

  it("property: a re-hashed forgery placed before the original is reported as inserted", () => {
    fc.assert(fc.property(logArb, fc.nat(), fc.boolean(), (origins, pick, linked) => {
      const lines = makeLog(origins);
      const i = pick % lines.length;
      const original = parse(lines[i]!);
      const forged = { ...original, actor: "mallory", ...(linked ? {} : { prev_hash: "f".repeat(64) }) };
      lines.splice(i, 0, rehash(forged));
      const result = verifyAuditLog(lines);
      expect(result).toMatchObject({ ok: false, fault: "inserted" });
      // Which of two same-seq records is the forgery shows only if the chain goes on after them.
      if (nextOfOrigin(lines, i + 1) !== -1 || !linked) expect(result).toMatchObject({ line: i + 1 });
      else expect([i + 1, i + 2]).toContain((result as { line: number }).line);
    }));
  });

  it("property: a forged copy whose hash was not recomputed is reported as inserted, before or after the original", () => {
    fc.assert(fc.property(logArb, fc.nat(), fc.boolean(), (origins, pick, before) => {
      const lines = makeLog(origins);
      const i = pick % lines.length;
      const forged = lines[i]!.replace(/"note":"record \d+"/, '"note":"forged"');
      lines.splice(before ? i : i + 1, 0, forged);
      const line = before ? i + 1 : i + 2;
      expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "inserted", line });
    }));
  });

  it("property: a replayed copy of an earlier record is reported as inserted", () => {
    fc.assert(fc.property(logArb, fc.nat(), fc.nat(), (origins, a, b) => {
      const lines = makeLog(origins);
      const i = a % lines.length;
      const at = i + 1 + (b % (lines.length - i));
      lines.splice(at, 0, lines[i]!);
      expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "inserted" });
    }));
  });

  it("property: a record rewritten and re-hashed breaks the chain at the next record of its origin", () => {
    fc.assert(fc.property(logArb, fc.nat(), (origins, pick) => {
      const lines = makeLog(origins);
      const candidates = lines.map((_, i) => i).filter((i) => nextOfOrigin(lines, i) !== -1);
      fc.pre(candidates.length > 0);
      const i = candidates[pick % candidates.length]!;
      const j = nextOfOrigin(lines, i);
      lines[i] = rehash({ ...parse(lines[i]!), result: "rewritten" });
      expect(verifyAuditLog(lines)).toMatchObject({ ok: false, fault: "broken_chain", line: j + 1, seq: parse(lines[j]!).seq });
    }));
  });

  it("reports a missing start as a gap, a wrong genesis as a broken chain, and accepts a slice with `partial`", () => {
    const lines = makeLog([0, 0, 0, 0]);
    expect(verifyAuditLog(lines.slice(1))).toMatchObject({ ok: false, fault: "gap", line: 1, seq: 2 });
    expect(verifyAuditLog(lines.slice(1), { partial: true })).toMatchObject({ ok: true, records: 3 });
    const badGenesis = rehash({ ...parse(lines[0]!), prev_hash: "1".repeat(64) });
    expect(verifyAuditLog([badGenesis])).toMatchObject({ ok: false, fault: "broken_chain", line: 1, seq: 1 });
  });

  it("moving a record far back is a reorder, not a gap", () => {
    const lines = makeLog([0, 0, 0, 0, 0]);
    const moved = [lines[0]!, lines[2]!, lines[3]!, lines[4]!, lines[1]!];
    expect(verifyAuditLog(moved)).toMatchObject({ ok: false, fault: "reorder", line: 2, seq: 3 });
  });

  it("reports the earliest bad line when an undecided anomaly is followed by another fault", () => {
    const lines = makeLog([0, 1, 0, 1, 0]);
    // o0 seq 2 deleted: the jump at line 3 is decided (gap or reorder) only later; then line 4
    // (o1 seq 2) is edited. The earlier line wins.
    const editedO1 = lines[3]!.replace('"note":"record 3"', '"note":"x"');
    expect(verifyAuditLog([lines[0]!, lines[1]!, lines[4]!, editedO1])).toMatchObject({ ok: false, fault: "gap", line: 3, seq: 3 });
  });

  it.each([
    ["not JSON", "{nope", null, /not JSON/],
    ["an array", "[1,2]", null, /not a JSON object/],
    ["missing seq", '{"origin":"o"}', null, /valid `seq`/],
    ["a bad hash", JSON.stringify({ seq: 1, origin: "o", prev_hash: "0".repeat(64), hash: "xyz" }), 1, /valid `hash`/],
  ])("reports %s as malformed", (_name, line, seq, message) => {
    expect(verifyAuditLog([line])).toMatchObject({ ok: false, fault: "malformed", line: 1, seq, message: expect.stringMatching(message) });
  });

  it("reports a well-hashed record with a wrongly typed field as malformed", () => {
    const r = parse(makeLog([0])[0]!);
    expect(verifyAuditLog([rehash({ ...r, actor: 5 })])).toMatchObject({ ok: false, fault: "malformed", seq: 1, message: expect.stringMatching(/`actor`/) });
  });

  it("reports a blank line followed by more records as malformed", () => {
    const lines = makeLog([0, 0]);
    expect(verifyAuditLog([lines[0]!, "", lines[1]!])).toMatchObject({ ok: false, fault: "malformed", line: 2 });
  });
});

describe("verifyAuditLog line sources", () => {
  it("takes entries with their position, as the file and S3 readers yield them", async () => {
    const lines = makeLog([0, 0, 0]);
    const fromFiles = [
      { file: "audit.00000001.jsonl", lineNo: 1, line: lines[0]! },
      { file: "audit.jsonl", lineNo: 1, line: lines[2]! },
    ];
    expect(verifyAuditLog(fromFiles)).toMatchObject({ ok: false, fault: "gap", file: "audit.jsonl", line: 1, seq: 3 });
    async function* fromS3() {
      for (const [i, line] of lines.entries()) yield { key: "audit/o0/000.jsonl", lineNo: i + 1, line };
    }
    await expect(verifyAuditLog(fromS3())).resolves.toMatchObject({ ok: true, records: 3 });
    expect(verifyAuditLog([{ line: 42 } as never])).toMatchObject({ ok: false, fault: "malformed", line: 1, message: expect.stringContaining("not text") });
  });
});

describe("AuditVerifier", () => {
  it("takes positions from the caller (file and line) and stops after the first fault", () => {
    const lines = makeLog([0, 0, 0]);
    const v = new AuditVerifier();
    expect(v.push(lines[0]!, { file: "a.jsonl", line: 7 })).toBe(true);
    expect(v.push(lines[2]!, { file: "b.jsonl", line: 1 })).toBe(true);
    const result = v.finish();
    expect(result).toMatchObject({ ok: false, fault: "gap", file: "b.jsonl", line: 1, seq: 3 });
    expect((result as { message: string }).message).toContain("b.jsonl:1");
    expect(v.push(lines[1]!)).toBe(false);
    expect(v.finish()).toBe(result);
  });
});
