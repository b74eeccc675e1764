import { describe, expect, it } from "vitest";
import { auditObjectKey, normalizePrefix, parseAuditObjectKey } from "./key.ts";

describe("audit object keys", () => {
  it("lays out prefix/date/origin/seq range with 20-digit zero padding", () => {
    const key = auditObjectKey("audit/prod/", {
      origin: "host-a:42",
      firstTimestamp: Date.UTC(2026, 10, 22, 23, 59, 59) / 1000,
      seqStart: 7,
      seqEnd: 1234,
    });
    expect(key).toBe("audit/prod/2026/11/22/host-a%3A42/00000000000000000007-00000000000000001234.jsonl");
  });

  it("sorts lexically in seq order within an origin", () => {
    const keys = [[990, 1000], [0, 9], [10, 989]].map(([s, e]) =>
      auditObjectKey("p", { origin: "o", firstTimestamp: 0, seqStart: s!, seqEnd: e! }),
    );
    expect([...keys].sort().map((k) => parseAuditObjectKey("p", k)?.seqStart)).toEqual([0, 10, 990]);
  });

  it("keeps a slash in the origin from adding a level, and parses it back", () => {
    const key = auditObjectKey("", { origin: "a/b c", firstTimestamp: 0, seqStart: 0, seqEnd: 0 });
    expect(key).toBe("1970/01/01/a%2Fb%20c/00000000000000000000-00000000000000000000.jsonl");
    expect(parseAuditObjectKey(undefined, key)).toEqual({ day: "1970/01/01", origin: "a/b c", seqStart: 0, seqEnd: 0 });
  });

  it("normalizes prefixes and ignores keys that are not the sink's", () => {
    expect(normalizePrefix("/x/y/")).toBe("x/y/");
    expect(normalizePrefix("")).toBe("");
    expect(parseAuditObjectKey("x", "y/1970/01/01/o/00000000000000000000-00000000000000000000.jsonl")).toBeUndefined();
    expect(parseAuditObjectKey("x", "x/1970/01/01/o/0-1.jsonl")).toBeUndefined();
    expect(parseAuditObjectKey("x", "x/1970/01/01/%E0%A4%A/00000000000000000000-00000000000000000000.jsonl")).toBeUndefined();
  });
});
