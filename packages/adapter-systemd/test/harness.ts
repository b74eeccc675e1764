// Real processes for the protocol tests: a notify-socket receiver (python3, the way systemd reads
// it: one datagram at a time, with the sender's pid from SO_PASSCRED) and the worker fixture.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const RECEIVER = fileURLToPath(new URL("./notify-receiver.py", import.meta.url));
export const WORKER = fileURLToPath(new URL("./fixtures/notify-worker.ts", import.meta.url));
/** Node flags for a TypeScript fixture that imports workspace packages from source. */
export const SOURCE_EXEC_ARGV = ["--conditions=@openrtc/source", "--import", "tsx"];
const WAIT_MS = 15_000;

export interface Datagram {
  /** CLOCK_MONOTONIC at receipt, ms. */
  ms: number;
  /** The sender's pid, from the kernel (SO_PASSCRED). */
  pid: number | null;
  data: string;
  fields: Map<string, string>;
}

export function parseDatagram(data: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of data.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return fields;
}

interface Lines {
  lines: string[];
  onLine(listener: () => void): void;
}

function follow(stream: NodeJS.ReadableStream): Lines {
  const lines: string[] = [];
  const listeners: (() => void)[] = [];
  createInterface({ input: stream }).on("line", (line) => {
    lines.push(line);
    for (const l of listeners) l();
  });
  return { lines, onLine: (listener) => listeners.push(listener) };
}

/** Resolves once `test()` returns a value, re-checked on each new line; rejects on exit or after WAIT_MS. */
function waitUntil<T>(source: Lines, exited: Promise<unknown>, what: string, test: () => T | undefined, context: () => string): Promise<T> {
  const now = test();
  if (now !== undefined) return Promise.resolve(now);
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}\n${context()}`)), WAIT_MS);
    const finish = (error?: Error, value?: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error !== undefined) reject(error);
      else resolve(value as T);
    };
    source.onLine(() => {
      if (done) return;
      const value = test();
      if (value !== undefined) finish(undefined, value);
    });
    void exited.then(() => {
      // A line may still be in the pipe when the exit is seen.
      setTimeout(() => {
        const value = test();
        if (value !== undefined) finish(undefined, value);
        else finish(new Error(`process exited before ${what}\n${context()}`));
      }, 100);
    });
  });
}

export class Receiver {
  readonly datagrams: Datagram[] = [];
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly out: Lines;
  private readonly exited: Promise<unknown>;
  private stderr = "";

  constructor(readonly address: string) {
    this.child = spawn("python3", [RECEIVER, address], { stdio: ["pipe", "pipe", "pipe"] });
    this.child.stderr.on("data", (d) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on("exit", resolve));
    this.out = follow(this.child.stdout);
    this.out.onLine(() => {
      const last = JSON.parse(this.out.lines.at(-1)!) as { ms?: number; pid?: number | null; data?: string };
      if (last.data !== undefined) this.datagrams.push({ ms: last.ms!, pid: last.pid ?? null, data: last.data, fields: parseDatagram(last.data) });
    });
  }

  bound(): Promise<void> {
    return this.waitLine('"bound"').then(() => undefined);
  }

  private waitLine(fragment: string, after = 0): Promise<string> {
    return waitUntil(this.out, this.exited, `receiver line ${fragment}`, () => this.out.lines.slice(after).find((l) => l.includes(fragment)), () => this.stderr);
  }

  /** The first datagram (from index `from` on) that has `key` (and, if given, `value`). */
  waitFor(key: string, value?: string | RegExp, from = 0): Promise<Datagram> {
    const matches = (d: Datagram) => {
      const v = d.fields.get(key);
      if (v === undefined) return false;
      if (value === undefined) return true;
      return typeof value === "string" ? v === value : value.test(v);
    };
    return waitUntil(this.out, this.exited, `datagram ${key}=${String(value ?? "*")}`, () => this.datagrams.slice(from).find(matches), () => this.describe());
  }

  /** Resolves once `count` datagrams with `key` have arrived. */
  waitForCount(key: string, count: number): Promise<Datagram[]> {
    return waitUntil(this.out, this.exited, `${count} datagrams with ${key}`, () => {
      const found = this.with(key);
      return found.length >= count ? found : undefined;
    }, () => this.describe());
  }

  with(key: string): Datagram[] {
    return this.datagrams.filter((d) => d.fields.has(key));
  }

  statuses(): string[] {
    return this.with("STATUS").map((d) => d.fields.get("STATUS")!);
  }

  async unbind(): Promise<void> {
    const after = this.out.lines.length;
    this.child.stdin.write("unbind\n");
    await this.waitLine('"unbound"', after);
  }

  async rebind(): Promise<void> {
    const after = this.out.lines.length;
    this.child.stdin.write("rebind\n");
    await this.waitLine('"bound"', after);
  }

  describe(): string {
    return `datagrams:\n${this.datagrams.map((d) => JSON.stringify(d.data)).join("\n")}\nreceiver stderr: ${this.stderr}`;
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 2000);
    await this.exited;
    clearTimeout(timer);
  }
}

export class Worker {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly out: Lines;
  private stderr = "";

  constructor(env: Record<string, string | undefined>) {
    const base = { ...process.env };
    // Never inherit the test runner's own systemd context.
    delete base.NOTIFY_SOCKET;
    delete base.WATCHDOG_USEC;
    delete base.WATCHDOG_PID;
    const merged: NodeJS.ProcessEnv = { ...base };
    for (const [key, value] of Object.entries(env)) {
      if (value === undefined) delete merged[key];
      else merged[key] = value;
    }
    this.child = spawn(process.execPath, [...SOURCE_EXEC_ARGV, WORKER], { stdio: ["pipe", "pipe", "pipe"], env: merged });
    this.child.stderr.on("data", (d) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
    this.out = follow(this.child.stdout);
  }

  get pid(): number {
    return this.child.pid!;
  }

  get lines(): string[] {
    return this.out.lines;
  }

  waitFor(prefix: string): Promise<string> {
    return waitUntil(this.out, this.exited, `worker line ${prefix}`, () => this.out.lines.find((l) => l.startsWith(prefix)), () => this.describe());
  }

  /** Sends a command and waits for its reply line. */
  async command(line: string, reply: string): Promise<string> {
    const after = this.out.lines.length;
    this.child.stdin.write(`${line}\n`);
    return waitUntil(this.out, this.exited, `reply ${reply} to ${line}`, () => this.out.lines.slice(after).find((l) => l.startsWith(reply)), () => this.describe());
  }

  logs(level: string, fragment: string): string[] {
    return this.out.lines.filter((l) => l.startsWith(`LOG ${level} `) && l.includes(fragment));
  }

  audit(event: string): Record<string, unknown>[] {
    return this.out.lines
      .filter((l) => l.startsWith("AUDIT "))
      .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
      .filter((r) => r.event === event);
  }

  describe(): string {
    return `worker stdout:\n${this.out.lines.join("\n")}\nworker stderr: ${this.stderr.slice(-3000)}`;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}
