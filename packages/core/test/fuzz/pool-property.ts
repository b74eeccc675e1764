/**
 * The pool's property: random sequences of start/end/drain/close/listener-throws against a real
 * AgentPool, with the invariants checked after every step. Shared by src/pool.property.test.ts
 * and `pnpm fuzz` (which runs it at a larger size).
 */
import { expect } from "vitest";
import fc from "fast-check";
import { AgentPool, type MembershipGate, type Session } from "../../src/pool.ts";
import { JobRejectedError } from "../../src/drain.ts";
import { silentLogger } from "../../src/logger.ts";
import type { PoolEvents } from "../../src/pool.ts";
import { manualClock, memorySink } from "../../src/testing/memory-sink.ts";

const EVENTS: (keyof PoolEvents)[] = ["state", "sessionStarted", "sessionEnded", "rejected", "membership", "drainStuck"];

type Op =
  | { op: "start"; job: number; tenant: string | null }
  | { op: "end"; job: number; status: "success" | "failed" | "cancelled" }
  | { op: "drain" }
  | { op: "ready" }
  | { op: "close"; drop: boolean }
  | { op: "throwingListener"; event: keyof PoolEvents; async: boolean }
  | { op: "reentrantListener" }
  | { op: "membership"; member: boolean };

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("start" as const), job: fc.nat(7), tenant: fc.constantFrom(null, "acme", "beta", "acme corp") }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant("end" as const), job: fc.nat(7), status: fc.constantFrom("success" as const, "failed" as const, "cancelled" as const) }) },
  { weight: 2, arbitrary: fc.constant({ op: "drain" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "ready" as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("close" as const), drop: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("throwingListener" as const), event: fc.constantFrom(...EVENTS), async: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: "reentrantListener" as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("membership" as const), member: fc.boolean() }) },
);

function switchableGate(): MembershipGate & { set(member: boolean): void } {
  let member = true;
  const listeners = new Set<() => void>();
  return {
    isMember: () => member,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(value) {
      member = value;
      for (const l of [...listeners]) l();
    },
  };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Runs one random sequence against a real pool and checks the invariants after every step:
 * - active sessions = sessions started − sessions ended (each end counted once);
 * - `drained` resolves iff the pool is drained or closed; drained ⇒ no live call; draining ⇒ some;
 * - at most one `deployment.drain_started`, exactly one once a drain began;
 * - nothing a listener does (throw, reject, re-enter) reaches a caller or the state machine.
 */
export async function checkPoolSequence(ops: readonly Op[]): Promise<void> {
  const sink = memorySink();
  const gate = switchableGate();
  const pool = new AgentPool({ deploymentVersion: "v1", workerId: "w", clock: manualClock(), auditSinks: [sink], logger: silentLogger, membership: gate, tenantPolicy: "label" });
  let drainedResolved = false;
  void pool.drained.then(() => (drainedResolved = true));
  const live = new Map<number, Session>();
  let started = 0;
  let ended = 0;
  let drainBegan = false;
  let closed = false;
  let staleDeliveries = 0;
  pool.on("sessionEnded", (info) => {
    // Delivered after the change: the registry no longer holds the ended session.
    if (pool.session(info.jobId)?.info === info) staleDeliveries++;
  });

  for (const step of ops) {
    switch (step.op) {
      case "start": {
        const expectAccept = !closed && !pool.draining && pool.member && !live.has(step.job);
        try {
          const session = pool.startSession({ jobId: `job-${step.job}`, metadata: step.tenant === null ? undefined : { tenant: step.tenant } });
          expect(expectAccept).toBe(true);
          live.set(step.job, session);
          started++;
        } catch (error) {
          expect(expectAccept).toBe(false);
          if (live.has(step.job) && !pool.draining && pool.member && !closed) expect(error).not.toBeInstanceOf(JobRejectedError);
          else expect(error).toBeInstanceOf(JobRejectedError);
        }
        break;
      }
      case "end": {
        const session = live.get(step.job);
        if (session === undefined) break;
        expect(session.end({ status: step.status })).toBe(true);
        expect(session.end({ status: step.status })).toBe(false);
        live.delete(step.job);
        ended++;
        break;
      }
      case "drain":
        pool.beginDrain({ actor: "prop" });
        if (!closed) drainBegan = true;
        break;
      case "ready":
        pool.markReady();
        break;
      case "close": {
        if (live.size > 0 && !step.drop) {
          await expect(pool.close()).rejects.toThrow(/refusing to close/);
          break;
        }
        const result = await pool.close({ dropLiveSessions: step.drop });
        if (!closed) {
          expect(result.droppedSessions).toBe(live.size);
          ended += live.size;
          live.clear();
        }
        closed = true;
        break;
      }
      case "throwingListener":
        pool.on(step.event, step.async ? async () => Promise.reject(new Error("async listener")) : () => {
          throw new Error("listener");
        });
        break;
      case "reentrantListener":
        // A listener that re-enters the pool from inside a delivery.
        pool.once("sessionEnded", () => pool.beginDrain({ actor: "listener" }));
        break;
      case "membership":
        gate.set(step.member);
        break;
    }
    await tick();
    if (pool.draining && !closed) drainBegan = true;
    // Ends made by close are counted above; ends triggered by nothing else exist.
    expect(pool.activeSessions).toBe(started - ended);
    expect(pool.activeSessions).toBe(live.size);
    const snapshot = pool.runtimeSnapshot();
    expect(snapshot.totalSessionsStarted).toBe(started);
    expect(drainedResolved).toBe(pool.state === "drained" || pool.state === "closed");
    if (pool.state === "drained") expect(pool.activeSessions).toBe(0);
    if (pool.state === "draining") expect(pool.activeSessions).toBeGreaterThan(0);
  }
  expect(staleDeliveries).toBe(0);
  await pool.auditLog.flush();
  const drainStarted = sink.records.filter((r) => r.event === "deployment.drain_started").length;
  expect(drainStarted).toBe(drainBegan ? 1 : 0);
  const exited = sink.records.findIndex((r) => r.event === "worker.exited");
  const completed = sink.records.findIndex((r) => r.event === "deployment.drain_completed");
  // A drain cut by a dropping close never reports itself completed, and nothing follows exit.
  if (exited !== -1 && sink.records[exited]!.result === "dropped") expect(completed === -1 || completed < exited).toBe(true);
  if (exited !== -1) expect(exited).toBe(sink.records.length - 1);
  if (!closed) await pool.close({ dropLiveSessions: true });
}

export const poolOpsArb = fc.array(opArb, { maxLength: 60 });

