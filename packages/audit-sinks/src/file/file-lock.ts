import { readFileSync } from "node:fs";
import { open, readFile, rm } from "node:fs/promises";
import { hostname } from "node:os";

/**
 * One writer per log file. The sink writes at the offset where it believes the file ends; a
 * second process writing the same file would overwrite acknowledged records. The lock is
 * `<path>.lock`, holding who owns it:
 * `{ pid, host, boot, start }` — `start` is the process start time from /proc (so a pid reused
 * after a container restart, where the new process often gets the very same pid, is not taken
 * for the old owner), `boot` the kernel boot id (a lock from before a reboot is stale).
 */
export interface LockOwner {
  pid: number;
  host: string;
  boot: string | null;
  start: string | null;
}

export interface LockResult {
  /** Set when a lock left by a dead (or unverifiable) owner was taken over. */
  tookOverFrom: LockOwner | undefined;
  reason: string | undefined;
}

export class FileLockError extends Error {
  override readonly name = "FileLockError";
  constructor(
    message: string,
    /** The live owner that holds the lock, when that is why it could not be taken. */
    readonly owner?: LockOwner,
  ) {
    super(message);
  }
}

export function lockPath(path: string): string {
  return `${path}.lock`;
}

export function currentOwner(): LockOwner {
  return { pid: process.pid, host: safeHostname(), boot: bootId(), start: startTime(process.pid) };
}

/** Takes the lock of `path`, or throws `FileLockError` naming the live owner. */
export async function acquireLock(path: string, mode: number): Promise<LockResult> {
  const file = lockPath(path);
  const me = currentOwner();
  const body = `${JSON.stringify(me)}\n`;
  if (await createExclusive(file, body, mode)) return { tookOverFrom: undefined, reason: undefined };
  const owner = parseOwner(await readFile(file, "utf8").catch(() => ""));
  const verdict = owner === undefined ? "unreadable" : judge(owner, me);
  if (verdict === "alive") {
    const who = owner as LockOwner;
    throw new FileLockError(
      `audit file ${path} is being written by process ${who.pid}${who.pid === process.pid ? " (this process)" : ""} ` +
        `(lock ${file}); two writers would overwrite each other's records: give each process its own file`,
      who,
    );
  }
  // The owner is gone (crash, kill -9, reboot, container restart): the log is ours to continue.
  await rm(file, { force: true });
  if (!(await createExclusive(file, body, mode))) {
    throw new FileLockError(`audit file ${path}: another process took the lock ${file} at the same moment; retry`);
  }
  return { tookOverFrom: owner, reason: verdict };
}

export async function releaseLock(path: string): Promise<void> {
  const file = lockPath(path);
  const owner = parseOwner(await readFile(file, "utf8").catch(() => ""));
  // Only remove our own lock: a lock another process took over after ours went stale stays.
  if (owner !== undefined && owner.pid === process.pid && owner.start === startTime(process.pid)) {
    await rm(file, { force: true });
  }
}

type Verdict = "alive" | "dead" | "pid reused" | "rebooted" | "other host" | "unreadable";

function judge(owner: LockOwner, me: LockOwner): Verdict {
  if (owner.host !== me.host) {
    // Cannot check a process on another host; a volume that moved with a rescheduled pod is
    // the common case. The size check before every write still guards the records.
    return "other host";
  }
  if (owner.boot !== null && me.boot !== null && owner.boot !== me.boot) return "rebooted";
  if (!isAlive(owner.pid)) return "dead";
  const start = startTime(owner.pid);
  if (owner.start !== null && start !== null && owner.start !== start) return "pid reused";
  return "alive";
}

async function createExclusive(file: string, body: string, mode: number): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, "wx", mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  try {
    await handle.writeFile(body);
  } finally {
    await handle.close();
  }
  return true;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (!Number.isSafeInteger(value.pid) || typeof value.host !== "string") return undefined;
    return {
      pid: value.pid as number,
      host: value.host,
      boot: typeof value.boot === "string" ? value.boot : null,
      start: typeof value.start === "string" ? value.start : null,
    };
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Start time of a process in clock ticks since boot (Linux), or null where /proc is absent. */
export function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return null;
  }
}

function safeHostname(): string {
  try {
    return hostname();
  } catch {
    return "";
  }
}
