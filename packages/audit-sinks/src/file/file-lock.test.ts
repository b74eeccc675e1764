import { spawn } from "node:child_process";
import { appendFile, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { currentOwner, lockPath, startTime } from "./file-lock.ts";
import type { LockOwner } from "./file-lock.ts";
import { fileSink } from "./file-sink.ts";
import type { FileSinkWarning } from "./file-sink.ts";
import { chain, readRecords, useTempDir } from "./test-helpers.ts";

let dir: string;
let path: string;
useTempDir((made) => {
  dir = made;
  path = join(dir, "audit.jsonl");
});

const writeLock = (owner: LockOwner | string): Promise<void> =>
  writeFile(lockPath(path), typeof owner === "string" ? owner : JSON.stringify(owner));

async function openWithWarnings(): Promise<{ warnings: FileSinkWarning[]; close: () => Promise<void> }> {
  const warnings: FileSinkWarning[] = [];
  const sink = fileSink({ path, onWarning: (w) => warnings.push(w) });
  await sink.open();
  return { warnings, close: () => sink.close() };
}

describe("one writer per file", () => {
  it("holds <path>.lock (owner-only) while open and removes it on close", async () => {
    const sink = fileSink({ path });
    await sink.open();
    const owner = JSON.parse(await readFile(lockPath(path), "utf8")) as LockOwner;
    expect(owner).toEqual(currentOwner());
    expect((await stat(lockPath(path))).mode & 0o777).toBe(0o600);
    await sink.close();
    await expect(stat(lockPath(path))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("refuses a file whose lock a live process holds, and takes it over once that process is gone", async () => {
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e6)"], { stdio: "ignore" });
    await new Promise((resolve) => child.once("spawn", resolve));
    const pid = child.pid as number;
    try {
      await writeLock({ ...currentOwner(), pid, start: startTime(pid) });
      await expect(fileSink({ path }).open()).rejects.toThrow(
        `audit file ${path} is being written by process ${pid} (lock ${path}.lock); two writers would overwrite each other's records: give each process its own file`,
      );
    } finally {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
    const { warnings, close } = await openWithWarnings();
    await close();
    expect(warnings).toEqual([
      {
        code: "stale_lock",
        file: path,
        message: `took over ${path}.lock from process ${pid} on ${currentOwner().host} (dead); make sure no other process writes ${path}`,
      },
    ]);
  });

  it.each([
    ["pid reused", { start: "1" }],
    ["rebooted", { boot: "another-boot" }],
    ["other host", { host: "some-other-host" }],
  ] as const)("takes over a lock whose owner is gone: %s", async (reason, change) => {
    // Our own pid with another start time is exactly a container restart: the new process got
    // the old one's pid.
    await writeLock({ ...currentOwner(), ...change });
    const { warnings, close } = await openWithWarnings();
    await close();
    expect(warnings.map((w) => w.message)).toEqual([expect.stringContaining(`(${reason})`)]);
  });

  it("takes over an unreadable lock", async () => {
    await writeLock("garbage");
    const { warnings, close } = await openWithWarnings();
    await close();
    expect(warnings.map((w) => w.message)).toEqual([expect.stringContaining("from an unreadable owner (unreadable)")]);
  });

  it("close leaves a lock that another owner has since taken", async () => {
    const sink = fileSink({ path });
    await sink.open();
    const other = JSON.stringify({ ...currentOwner(), pid: 999_999_999 });
    await writeLock(other);
    await sink.close();
    expect(await readFile(lockPath(path), "utf8")).toBe(other);
  });

  it("refuses to write after something else changed the file, and leaves it as it is", async () => {
    const records = chain(2);
    const sink = fileSink({ path });
    await sink.write(records.slice(0, 1));
    await appendFile(path, '{"written":"by someone else"}\n');
    await expect(sink.write(records.slice(1))).rejects.toThrow(
      /audit file .*audit\.jsonl is \d+ bytes, but this sink wrote \d+: something else writes or truncated it; records not written \(one writer per file\)/,
    );
    await sink.close();
    expect(await readRecords(path)).toEqual([records[0], { written: "by someone else" }]);
  });
});
