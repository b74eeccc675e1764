import { describe, expect, it } from "vitest";
import type { AuditRecord } from "./log.ts";
import { auditLine, rememberAuditLine } from "./line.ts";

const record = (): AuditRecord => ({
  seq: 1,
  timestamp: 1,
  event: "e",
  actor: "a",
  target: "",
  result: "ok",
  version: null,
  origin: "o",
  prev_hash: "0".repeat(64),
  hash: "f".repeat(64),
});

describe("auditLine", () => {
  it("is JSON.stringify(record) when nothing was remembered", () => {
    const r = record();
    expect(auditLine(r)).toBe(JSON.stringify(r));
  });

  it("returns the text remembered for that record object only", () => {
    const r = record();
    rememberAuditLine(r, "remembered");
    expect(auditLine(r)).toBe("remembered");
    expect(auditLine(record())).toBe(JSON.stringify(record()));
  });

  it("leaves no trace in the record's JSON, keys, copies or equality", () => {
    const r = record();
    rememberAuditLine(r, "remembered");
    Object.freeze(r);
    expect(JSON.stringify(r)).toBe(JSON.stringify(record()));
    expect(Object.keys(r)).toEqual(Object.keys(record()));
    expect({ ...r }).toEqual(record());
    expect(r).toStrictEqual(record());
    expect(auditLine({ ...r })).toBe(JSON.stringify(record()));
  });

  it("works for a record frozen before its line was remembered", () => {
    const r = Object.freeze(record());
    rememberAuditLine(r, "remembered");
    expect(auditLine(r)).toBe("remembered");
  });
});
