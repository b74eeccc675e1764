import { describe, expect, test } from "vitest";
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startChild } from "../test/child.ts";
import { AgentPool } from "./pool.ts";
import { attachProcessLifecycle } from "./lifecycle.ts";
import { silentLogger } from "./logger.ts";

const fixture = fileURLToPath(new URL("../test/fixtures/signal-worker.ts", import.meta.url));

interface Worker {
  child: ChildProcessWithoutNullStreams;
  url: string;
  lines: string[];
  waitFor(prefix: string): Promise<string>;
  send(command: string): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  audit(): Record<string, unknown>[];
}

/** Starts the fixture as a real child process and follows its stdout line by line. */
async function startWorker(): Promise<Worker> {
  const c = startChild(fixture);
  const ready = await c.waitFor("READY ");
  return {
    child: c.child,
    url: ready.slice("READY ".length),
    lines: c.lines,
    waitFor: c.waitFor,
    send: (command) => c.child.stdin.write(`${command}\n`),
    exited: c.exited,
    audit: () => c.lines.filter((l) => l.startsWith("AUDIT ")).map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>),
  };
}

async function snapshot(url: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`${url}/snapshot`)).json()) as Record<string, unknown>;
}

describe("a real worker process and real signals", () => {
  test("SIGTERM with a live call: drains, rejects new jobs, exits 0 only after the call ends", async () => {
    const w = await startWorker();
    w.send("start call-1");
    await w.waitFor("STARTED call-1");
    w.child.kill("SIGTERM");
    // Still alive and draining, holding the call: the snapshot is served by the process itself.
    await expect.poll(async () => (await snapshot(w.url)).draining).toBe(true);
    expect(await snapshot(w.url)).toMatchObject({ active_sessions: 1, state: "draining" });
    expect((await fetch(`${w.url}/readyz`)).status).toBe(503);
    w.send("start call-2");
    expect(await w.waitFor("REJECTED call-2")).toContain("draining");
    // A second SIGTERM never drops the call.
    w.child.kill("SIGTERM");
    expect(await snapshot(w.url)).toMatchObject({ active_sessions: 1 });
    expect(w.child.exitCode).toBeNull();
    w.send("end call-1");
    const exit = await w.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const events = w.audit().map((r) => r.event);
    expect(events).toEqual(["deployment.drain_started", "worker.rejected", "deployment.drain_completed", "worker.exited"]);
    expect(w.audit()[0]).toMatchObject({ actor: "signal:SIGTERM", active_sessions: 1 });
    expect(w.audit().at(-1)).toMatchObject({ result: "ok", dropped_sessions: 0 });
    expect(w.lines.indexOf("ENDED call-1")).toBeGreaterThan(-1);
  });

  test("a second SIGINT forces exit and records how many live calls it dropped", async () => {
    const w = await startWorker();
    w.send("start a");
    w.send("start b");
    await w.waitFor("STARTED b");
    w.child.kill("SIGINT");
    await expect.poll(async () => (await snapshot(w.url)).draining).toBe(true);
    w.child.kill("SIGINT");
    const exit = await w.exited;
    expect(exit.code).toBe(130);
    const exited = w.audit().find((r) => r.event === "worker.exited");
    expect(exited).toMatchObject({ result: "dropped", dropped_sessions: 2, actor: "signal:SIGINT" });
  });

  test("drain begun over HTTP with no live call exits 0", async () => {
    const w = await startWorker();
    expect((await fetch(`${w.url}/drain`, { method: "POST", body: JSON.stringify({ actor: "ci" }) })).status).toBe(202);
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(w.audit().map((r) => r.event)).toEqual(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]);
  });
});

describe("attachProcessLifecycle without signals", () => {
  test("closes the pool, lingers, runs beforeExit, then exits with 0 once drained", async () => {
    const pool = new AgentPool({ logger: silentLogger });
    const order: string[] = [];
    pool.on("state", (s) => order.push(`state:${s}`));
    const exits: number[] = [];
    const lifecycle = attachProcessLifecycle(pool, {
      signals: false,
      metricsLingerMs: 20,
      beforeExit: () => {
        order.push("beforeExit");
      },
      exit: (code) => exits.push(code),
    });
    const session = pool.startSession({ jobId: "j" });
    pool.beginDrain();
    session.end();
    expect(await lifecycle.exiting).toBe(0);
    expect(exits).toEqual([0]);
    expect(order).toEqual(["state:draining", "state:drained", "state:closed", "beforeExit"]);
  });

  test("a hanging beforeExit is bounded and the process still exits", async () => {
    const pool = new AgentPool({ logger: silentLogger });
    const exits: number[] = [];
    const lifecycle = attachProcessLifecycle(pool, { signals: false, beforeExitTimeoutMs: 20, beforeExit: () => new Promise(() => {}), exit: (c) => exits.push(c) });
    pool.beginDrain();
    expect(await lifecycle.exiting).toBe(0);
    expect(exits).toEqual([0]);
  });
});

describe("one shutdown path per pool", () => {
  test("a second attachment joins the first: one pair of signal handlers, hooks last-attached first, detach removes them", async () => {
    const before = { term: process.listenerCount("SIGTERM"), int: process.listenerCount("SIGINT") };
    const pool = new AgentPool({ logger: silentLogger });
    const order: string[] = [];
    const exits: number[] = [];
    const first = attachProcessLifecycle(pool, { beforeExit: () => void order.push("adapter"), exit: (c) => exits.push(c) });
    const second = attachProcessLifecycle(pool, { beforeExit: () => void order.push("server") });
    expect(process.listenerCount("SIGTERM")).toBe(before.term + 1);
    expect(process.listenerCount("SIGINT")).toBe(before.int + 1);
    expect(second.exiting).toBe(first.exiting);
    second.detach();
    second.detach();
    expect(process.listenerCount("SIGTERM")).toBe(before.term + 1);
    const third = attachProcessLifecycle(pool, { beforeExit: () => void order.push("server-2") });
    pool.beginDrain();
    expect(await first.exiting).toBe(0);
    expect(order).toEqual(["server-2", "adapter"]);
    expect(exits).toEqual([0]);
    expect(process.listenerCount("SIGTERM")).toBe(before.term);
    expect(process.listenerCount("SIGINT")).toBe(before.int);
    third.detach();
  });

  test("setExitCode raises the code of a clean drain and never lowers it", async () => {
    const pool = new AgentPool({ logger: silentLogger });
    const exits: number[] = [];
    const lifecycle = attachProcessLifecycle(pool, { signals: false, exit: (c) => exits.push(c) });
    lifecycle.setExitCode(1);
    lifecycle.setExitCode(0);
    pool.beginDrain();
    expect(await lifecycle.exiting).toBe(1);
    expect(exits).toEqual([1]);
  });

  test("a forced exit while the graceful shutdown runs its hooks exits once and never runs a hook twice", async () => {
    const pool = new AgentPool({ logger: silentLogger });
    const exits: number[] = [];
    let calls = 0;
    let release!: () => void;
    const lifecycle = attachProcessLifecycle(pool, {
      signals: false,
      exit: (c) => exits.push(c),
      beforeExit: () => {
        calls++;
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    // The graceful path: drained, then the hook starts and hangs.
    pool.beginDrain();
    await expect.poll(() => calls).toBe(1);
    // The operator's second SIGINT (the forced path) arrives while the hook runs.
    const sigintListeners = process.listeners("SIGINT");
    const attached = attachProcessLifecycle(pool, { sigint: true });
    const onSigint = process.listeners("SIGINT").find((l) => !sigintListeners.includes(l))!;
    onSigint("SIGINT");
    onSigint("SIGINT");
    expect(await lifecycle.exiting).toBe(130);
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(calls).toBe(1);
    expect(exits).toEqual([130]);
    attached.detach();
  });
});

describe("the lifecycle's exits flush the audit log synchronously", () => {
  test("a forced exit that cuts the pool's audit flush short hands every unacknowledged record to writeSync before exit", async () => {
    const synced: string[] = [];
    let syncedAtExit: string[] | undefined;
    // A sink whose async writes never settle: only writeSync can put the records anywhere.
    const stuck = { name: "stuck", write: () => new Promise<void>(() => {}), writeSync: (rs: readonly { event: string }[]) => void synced.push(...rs.map((r) => r.event)) };
    const pool = new AgentPool({ logger: silentLogger, audit: { sinks: [stuck], flushOnExit: false } });
    const before = process.listeners("SIGINT");
    const lifecycle = attachProcessLifecycle(pool, { sigint: true, auditFlushTimeoutMs: 60_000, exit: () => (syncedAtExit = [...synced]) });
    const onSigint = process.listeners("SIGINT").find((l) => !before.includes(l))!;
    onSigint("SIGINT"); // drains (nothing live): the graceful close now waits on the stuck sink
    await expect.poll(() => pool.state).toBe("closed");
    expect(synced).toEqual([]);
    onSigint("SIGINT"); // the operator gives up waiting
    expect(await lifecycle.exiting).toBe(130);
    expect(syncedAtExit).toEqual(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]);
    lifecycle.detach();
  });
});

describe("signal-begun drains carry what the platform adds", () => {
  test("signalDrain names the actor and adds fields (merged across attachments), keeping the signal's name", async () => {
    const records: Record<string, unknown>[] = [];
    const pool = new AgentPool({ logger: silentLogger, auditSinks: [{ name: "mem", write: async (batch) => void records.push(...(batch as unknown as Record<string, unknown>[])) }] });
    const exits: number[] = [];
    const before = process.listeners("SIGTERM");
    const first = attachProcessLifecycle(pool, { exit: (c) => exits.push(c), signalDrain: { fields: { pod: "w-1" } } });
    const second = attachProcessLifecycle(pool, { signalDrain: { actor: "kubernetes", fields: { namespace: "voice" } } });
    const onSigterm = process.listeners("SIGTERM").find((l) => !before.includes(l))!;
    onSigterm("SIGTERM");
    expect(await first.exiting).toBe(0);
    await pool.auditLog.flush();
    expect(records.find((r) => r.event === "deployment.drain_started")).toMatchObject({ actor: "kubernetes", pod: "w-1", namespace: "voice", signal: "SIGTERM", reason: "received SIGTERM" });
    second.detach();
  });
});
