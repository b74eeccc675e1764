import { describe, expect, it } from "vitest";
import type { AuditRecord } from "./audit.ts";
import { auditLine, rememberAuditLine } from "./audit-line.ts";

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

  it("returns the remembered text for that record object only", () => {
    const r = record();
    rememberAuditLine(r, "remembered");
    expect(auditLine(r)).toBe("remembered");
    expect(auditLine(record())).toBe(JSON.stringify(record()));
  });
});
