import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fileSink } from "./file-sink.ts";
import type { FileSinkWarning } from "./file-sink.ts";
import { chain, chainProblems, readRecords, useTempDir } from "./test-helpers.ts";

let dir: string;
let path: string;
useTempDir((made) => {
  dir = made;
  path = join(dir, "audit.jsonl");
});

const lines = (records: readonly object[]): string => records.map((r) => `${JSON.stringify(r)}\n`).join("");

interface SideEntry {
  file: string;
  offset: number;
  bytes: number;
  recovered_at: number;
  base64: string;
}

async function sideEntries(): Promise<SideEntry[]> {
  const text = await readFile(`${path}.torn`, "utf8");
  return text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as SideEntry);
}

describe("torn tail on open", () => {
  it("moves the torn bytes to <file>.torn, cuts them off, reports them, and resumes from the last whole record", async () => {
    const records = chain(4);
    const whole = lines(records.slice(0, 3));
    const torn = JSON.stringify(records[3]).slice(0, 57);
    await writeFile(path, whole + torn, { mode: 0o600 });
    const warnings: FileSinkWarning[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w), clock: () => 42 });
    const info = await sink.open();
    const offset = Buffer.byteLength(whole);
    const recovery = { file: path, offset, bytes: 57, sideFile: `${path}.torn` };
    expect(info.recovered).toEqual(recovery);
    expect(sink.recovered).toEqual([recovery]);
    expect(info.lastRecord).toEqual(records[2]);
    expect(warnings).toEqual([
      {
        code: "torn_tail",
        file: path,
        message: `audit file ${path} ended in a torn write (57 bytes at offset ${offset}, never acknowledged); moved them to ${path}.torn`,
      },
    ]);
    expect(await readFile(path, "utf8")).toBe(whole);
    expect(await sideEntries()).toEqual([
      { file: path, offset, bytes: 57, recovered_at: 42, base64: Buffer.from(torn).toString("base64") },
    ]);
    // The next record starts on its own line, never glued to the fragment.
    await sink.write(records.slice(3));
    await sink.close();
    const after = await readRecords(path);
    expect(after.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(chainProblems(after)).toEqual([]);
  });

  it("keeps the exact bytes of a torn multi-byte character and appends later recoveries", async () => {
    const records = chain(1);
    const fragment = Buffer.concat([Buffer.from('{"seq":2,"note":"'), Buffer.from("é").subarray(0, 1)]);
    await writeFile(path, Buffer.concat([Buffer.from(lines(records)), fragment]), { mode: 0o600 });
    let sink = fileSink({ path, onWarning: () => undefined });
    await sink.open();
    await sink.close();
    await writeFile(path, Buffer.concat([await readFile(path), Buffer.from("\0\0\0\0")]));
    sink = fileSink({ path, onWarning: () => undefined });
    await sink.open();
    await sink.close();
    const entries = await sideEntries();
    expect(entries.map((e) => Buffer.from(e.base64, "base64"))).toEqual([fragment, Buffer.from("\0\0\0\0")]);
    expect(await readFile(path, "utf8")).toBe(lines(records));
  });

  it("handles a file that is nothing but a torn first write", async () => {
    await writeFile(path, '{"seq":1,"tim', { mode: 0o600 });
    const sink = fileSink({ path, onWarning: () => undefined });
    const info = await sink.open();
    expect(info).toMatchObject({ lastRecord: undefined, recovered: { offset: 0, bytes: 13 } });
    await sink.write(chain(1));
    await sink.close();
    expect((await readRecords(path)).map((r) => r.seq)).toEqual([1]);
  });

  it("finds the last whole record when it and the torn tail are longer than a read chunk", async () => {
    const [record] = chain(1);
    const big = { ...record!, note: "x".repeat(200_000) };
    const tail = "y".repeat(150_000);
    await writeFile(path, `${JSON.stringify(big)}\n${tail}`, { mode: 0o600 });
    const sink = fileSink({ path, onWarning: () => undefined });
    const info = await sink.open();
    await sink.close();
    expect(info.lastRecord).toEqual(big);
    expect(info.recovered?.bytes).toBe(150_000);
  });

  it("reports nothing for a file ending in a newline", async () => {
    await writeFile(path, lines(chain(2)), { mode: 0o600 });
    const warnings: FileSinkWarning[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w) });
    const info = await sink.open();
    await sink.close();
    expect(info.recovered).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it("warns when the last whole line is not a record, and leaves it for the verifier", async () => {
    const content = `${lines(chain(1))}not json\n`;
    await writeFile(path, content, { mode: 0o600 });
    const warnings: FileSinkWarning[] = [];
    const sink = fileSink({ path, onWarning: (w) => warnings.push(w) });
    const info = await sink.open();
    await sink.close();
    expect(info.lastRecord).toBeUndefined();
    expect(warnings.map((w) => w.code)).toEqual(["unparsable_last_line"]);
    expect(warnings[0]!.message).toMatch(/is not a JSON record; the chain cannot resume from it \(run openrtc audit verify\)/);
    expect(await readFile(path, "utf8")).toBe(content);
  });

  it("a throwing warning handler does not stop the recovery", async () => {
    await writeFile(path, `${lines(chain(1))}{"torn`, { mode: 0o600 });
    const sink = fileSink({
      path,
      onWarning: () => {
        throw new Error("handler bug");
      },
    });
    const info = await sink.open();
    await sink.close();
    expect(info.recovered?.bytes).toBe(6);
  });

  it("warns through process warnings by default", async () => {
    await writeFile(path, '{"torn', { mode: 0o600 });
    const seen: Error[] = [];
    const listener = (w: Error): number => seen.push(w);
    process.on("warning", listener);
    try {
      const sink = fileSink({ path });
      await sink.open();
      await sink.close();
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", listener);
    }
    expect(seen.map((w) => (w as NodeJS.ErrnoException).code)).toContain("OPENRTC_AUDIT_TORN_TAIL");
  });
});
