import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  auditFileBase,
  listAuditFiles,
  readAuditFiles,
  rotatedAuditFileIndex,
  rotatedAuditFilePath,
} from "./files.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "audit-files-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(pathOrDir: string) {
  const out = [];
  for await (const line of readAuditFiles(pathOrDir)) out.push(line);
  return out;
}

describe("naming", () => {
  it("puts the zero-padded index between stem and extension", () => {
    expect(rotatedAuditFilePath("/var/log/audit.jsonl", 1)).toBe("/var/log/audit.00000001.jsonl");
    expect(rotatedAuditFilePath("/var/log/audit.jsonl", 123456789)).toBe("/var/log/audit.123456789.jsonl");
    expect(rotatedAuditFilePath("/x/audit", 2)).toBe("/x/audit.00000002");
    expect(auditFileBase("/x/a.b.jsonl")).toEqual({ dir: "/x", stem: "a.b", ext: ".jsonl", active: "/x/a.b.jsonl" });
  });

  it("rejects a non-positive index", () => {
    expect(() => rotatedAuditFilePath("/x/audit.jsonl", 0)).toThrow(/positive integer/);
    expect(() => rotatedAuditFilePath("/x/audit.jsonl", 1.5)).toThrow(/positive integer/);
  });

  it("recognises only its own set's rotated names", () => {
    const base = "/x/audit.jsonl";
    expect(rotatedAuditFileIndex(base, "audit.00000007.jsonl")).toBe(7);
    expect(rotatedAuditFileIndex(base, "audit.1234567890.jsonl")).toBe(1234567890);
    expect(rotatedAuditFileIndex(base, "audit.jsonl")).toBeUndefined();
    expect(rotatedAuditFileIndex(base, "audit.7.jsonl")).toBeUndefined();
    expect(rotatedAuditFileIndex(base, "audit.00000000.jsonl")).toBeUndefined();
    expect(rotatedAuditFileIndex(base, "other.00000001.jsonl")).toBeUndefined();
    expect(rotatedAuditFileIndex(base, "audit.jsonl.torn")).toBeUndefined();
    expect(rotatedAuditFileIndex(base, "audit.0000000x.jsonl")).toBeUndefined();
  });

  it("sorts lexically in chronological order with the active file last", () => {
    const base = "/x/audit.jsonl";
    const names = [base, rotatedAuditFilePath(base, 2), rotatedAuditFilePath(base, 10), rotatedAuditFilePath(base, 1)];
    expect([...names].sort()).toEqual([
      "/x/audit.00000001.jsonl",
      "/x/audit.00000002.jsonl",
      "/x/audit.00000010.jsonl",
      "/x/audit.jsonl",
    ]);
  });
});

describe("listAuditFiles", () => {
  it("orders rotated files numerically, then the active file, from the base path or the directory", async () => {
    const base = join(dir, "audit.jsonl");
    for (const i of [10, 2, 1, 123456789]) await writeFile(rotatedAuditFilePath(base, i), "");
    await writeFile(base, "");
    await writeFile(`${base}.torn`, "");
    await writeFile(join(dir, "notes.txt"), "");
    const expected = [1, 2, 10, 123456789].map((i) => rotatedAuditFilePath(base, i)).concat(base);
    expect(await listAuditFiles(base)).toEqual(expected);
    expect(await listAuditFiles(dir)).toEqual(expected);
  });

  it("reads a set whose active file is missing (crash between rotation and creation)", async () => {
    const base = join(dir, "audit.jsonl");
    await writeFile(rotatedAuditFilePath(base, 1), "");
    expect(await listAuditFiles(base)).toEqual([rotatedAuditFilePath(base, 1)]);
    expect(await listAuditFiles(dir)).toEqual([rotatedAuditFilePath(base, 1)]);
  });

  it("a single file not named like a set is read alone", async () => {
    const file = join(dir, "export.json");
    await writeFile(file, "{}\n");
    expect(await listAuditFiles(file)).toEqual([file]);
  });

  it("names the problem when there is nothing to read", async () => {
    await expect(listAuditFiles(join(dir, "audit.jsonl"))).rejects.toThrow(
      /no audit log at .*audit\.jsonl \(nor rotated files audit\.NNNNNNNN\.jsonl\)/,
    );
    await mkdir(join(dir, "empty"));
    await expect(listAuditFiles(join(dir, "empty"))).rejects.toThrow(/no audit log in .*empty: expected \*\.jsonl files/);
  });

  it("refuses a directory holding two logs and lists them", async () => {
    await writeFile(join(dir, "a.jsonl"), "");
    await writeFile(join(dir, "b.00000001.jsonl"), "");
    await expect(listAuditFiles(dir)).rejects.toThrow(/several audit logs \(a\.jsonl, b\.jsonl\); pass one of their paths/);
  });
});

describe("readAuditFiles", () => {
  it("yields every line in file order with 1-based numbers and flags a torn last line", async () => {
    const base = join(dir, "audit.jsonl");
    await writeFile(rotatedAuditFilePath(base, 1), '{"seq":1}\n{"seq":2}\n');
    await writeFile(base, '{"seq":3}\n\n{"seq":4}\n{"se');
    const lines = await collect(base);
    expect(lines.map((l) => [l.file === base ? "active" : "rotated", l.lineNo, l.line, l.terminated])).toEqual([
      ["rotated", 1, '{"seq":1}', true],
      ["rotated", 2, '{"seq":2}', true],
      ["active", 1, '{"seq":3}', true],
      ["active", 2, "", true],
      ["active", 3, '{"seq":4}', true],
      ["active", 4, '{"se', false],
    ]);
  });

  it("reassembles lines and multi-byte characters that straddle read chunks", async () => {
    const base = join(dir, "audit.jsonl");
    const long = `{"text":"${"é".repeat(70_000)}"}`;
    await writeFile(base, `${long}\n{"seq":2}\n`);
    const lines = await collect(base);
    expect(lines.map((l) => l.line)).toEqual([long, '{"seq":2}']);
  });
});
