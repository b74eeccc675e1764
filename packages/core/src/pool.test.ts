import { describe, expect, test, vi } from "vitest";
import fc from "fast-check";
import { AgentPool, settlePoolSettings, type MembershipGate } from "./pool.ts";
import { JobRejectedError } from "./drain.ts";
import { SNAPSHOT_KEYS } from "./snapshot.ts";
import { silentLogger } from "./logger.ts";
import { manualClock, memorySink } from "./testing/memory-sink.ts";

function makePool(options: ConstructorParameters<typeof AgentPool>[0] = {}) {
  const sink = memorySink();
  const clock = manualClock();
  const pool = new AgentPool({ deploymentVersion: "v1.0.0", workerId: "w-1", clock, auditSinks: [sink], logger: silentLogger, ...options });
  const events = async (type?: string) => {
    await pool.auditLog.flush();
    return sink.records.filter((r) => type === undefined || r.event === type);
  };
  return { pool, sink, clock, events };
}

function gate(initial: boolean): MembershipGate & { set(v: boolean): void } {
  let member = initial;
  const listeners = new Set<() => void>();
  return {
    isMember: () => member,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(v) {
      member = v;
      for (const l of listeners) l();
    },
  };
}

describe("AgentPool options", () => {
  test("deploymentVersion is trimmed", () => {
    expect(new AgentPool({ deploymentVersion: "  v2.0.0\n", logger: silentLogger }).deploymentVersion).toBe("v2.0.0");
  });

  test.each(["", "   ", "\t\n"])("blank deploymentVersion %j is an error naming the option", (v) => {
    expect(() => new AgentPool({ deploymentVersion: v })).toThrow(/deploymentVersion/);
  });

  test("undefined deploymentVersion is an untagged worker (null in JSON)", () => {
    const pool = new AgentPool({ logger: silentLogger });
    expect(pool.deploymentVersion).toBeNull();
    expect(pool.runtimeSnapshot().toJSON().deployment_version).toBeNull();
  });

  test("non-string deploymentVersion is refused", () => {
    expect(() => new AgentPool({ deploymentVersion: 2 as unknown as string })).toThrow(/deploymentVersion must be a string/);
  });

  test.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])("drainTimeoutMs %s is refused", (ms) => {
    expect(() => new AgentPool({ drainTimeoutMs: ms })).toThrow(/drainTimeoutMs/);
  });
});

describe("lifecycle states", () => {
  test("starting → serving on markReady; readiness follows", () => {
    const { pool } = makePool();
    expect(pool.state).toBe("starting");
    expect(pool.ready).toBe(false);
    pool.markReady({ workerId: "lk-worker-9" });
    expect(pool.state).toBe("serving");
    expect(pool.workerId).toBe("lk-worker-9");
    expect(pool.ready).toBe(true);
    pool.markReady({ workerId: "lk-worker-10" });
    expect(pool.state).toBe("serving");
    expect(pool.workerId).toBe("lk-worker-9");
  });

  test("the default worker id is unique per process start", () => {
    const a = new AgentPool({ logger: silentLogger }).workerId;
    const b = new AgentPool({ logger: silentLogger }).workerId;
    expect(a).not.toBe(b);
    expect(a).toContain(String(process.pid));
  });

  test("drain with no live session reaches drained at once", async () => {
    const { pool } = makePool();
    pool.markReady();
    pool.beginDrain();
    expect(pool.state).toBe("drained");
    await expect(pool.drained).resolves.toBeUndefined();
  });

  test("markReady after a drain began does not un-drain", () => {
    const { pool } = makePool();
    pool.beginDrain();
    pool.markReady();
    expect(pool.state).toBe("drained");
  });
});

describe("sessions", () => {
  test("info carries deploymentVersion and metadata.tenant", () => {
    const { pool } = makePool();
    const s = pool.startSession({ jobId: "j1", agentName: "support", roomName: "r1", metadata: '{"tenant":"acme","lang":"en"}' });
    expect(s.info).toMatchObject({ jobId: "j1", agentName: "support", roomName: "r1", deploymentVersion: "v1.0.0", tenant: "acme" });
    expect(s.info.metadata).toEqual({ tenant: "acme", lang: "en" });
    const d = pool.startSession({ jobId: "j2" });
    expect(d.info.metadata.tenant).toBe("default");
  });

  test("end is idempotent and counts once", () => {
    const { pool } = makePool();
    const s = pool.startSession({ jobId: "j1", metadata: { tenant: "acme" } });
    expect(pool.activeSessions).toBe(1);
    expect(s.end({ status: "failed", error: new Error("boom") })).toBe(true);
    expect(s.end({ status: "success" })).toBe(false);
    expect(s.outcome?.status).toBe("failed");
    expect(s.outcome?.error).toBe("boom");
    const snap = pool.runtimeSnapshot();
    expect(snap.activeSessions).toBe(0);
    expect(snap.totalSessionsStarted).toBe(1);
    expect(snap.totalSessionFailures).toBe(1);
  });

  test("a bad status is refused and the session stays live", () => {
    const { pool } = makePool();
    const s = pool.startSession({ jobId: "j1" });
    expect(() => s.end({ status: "done" as "success" })).toThrow(/success", "failed" or "cancelled/);
    expect(pool.activeSessions).toBe(1);
    expect(s.ended).toBe(false);
  });

  test("a duplicate live job id is refused; after it ends it may start again", () => {
    const { pool } = makePool();
    const s = pool.startSession({ jobId: "j1" });
    expect(() => pool.startSession({ jobId: "j1" })).toThrow(/already live/);
    s.end();
    expect(pool.startSession({ jobId: "j1" }).info.jobId).toBe("j1");
  });

  test("an empty job id is refused", () => {
    const { pool } = makePool();
    expect(() => pool.startSession({ jobId: "" })).toThrow(/jobId/);
  });

  test("per-tenant and per-agent counts stay exact under random start/end sequences", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ tenant: fc.constantFrom("a", "b", "c"), agent: fc.constantFrom("x", "y"), endAt: fc.nat(30) }), { maxLength: 30 }),
        (ops) => {
          const { pool } = makePool();
          const live = ops.map((op, i) => ({ ...op, s: pool.startSession({ jobId: `j${i}`, agentName: op.agent, metadata: { tenant: op.tenant } }) }));
          for (const op of [...live].sort((a, b) => a.endAt - b.endAt).slice(0, Math.floor(live.length / 2))) op.s.end();
          const expected = { tenant: {} as Record<string, number>, agent: {} as Record<string, number> };
          for (const op of live) {
            if (op.s.ended) continue;
            expected.tenant[op.tenant] = (expected.tenant[op.tenant] ?? 0) + 1;
            expected.agent[op.agent] = (expected.agent[op.agent] ?? 0) + 1;
          }
          const snap = pool.runtimeSnapshot();
          expect(snap.sessionsByTenant).toEqual(expected.tenant);
          expect(snap.sessionsByAgent).toEqual(expected.agent);
          expect(snap.activeSessions).toBe(live.filter((op) => !op.s.ended).length);
        },
      ),
    );
  });
});

describe("drain", () => {
  test("beginDrain is idempotent: one drain_started event with actor, reason, version", async () => {
    const { pool, events } = makePool();
    pool.markReady();
    pool.startSession({ jobId: "j1" });
    pool.beginDrain({ actor: "deployer", reason: "v2 rollout" });
    pool.beginDrain({ actor: "someone-else" });
    pool.beginDrain();
    const started = await events("deployment.drain_started");
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ actor: "deployer", reason: "v2 rollout", target: "worker", version: "v1.0.0" });
    expect(pool.draining).toBe(true);
    expect(pool.state).toBe("draining");
  });

  test("while draining every new job is rejected with a worker.rejected event; live calls are untouched", async () => {
    const { pool, events } = makePool();
    const live = pool.startSession({ jobId: "j1" });
    pool.beginDrain();
    let error: unknown;
    try {
      pool.startSession({ jobId: "j2", metadata: { tenant: "acme" } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(JobRejectedError);
    expect((error as JobRejectedError).reason).toBe("draining");
    expect((error as JobRejectedError).jobId).toBe("j2");
    const rejected = await events("worker.rejected");
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ result: "rejected", reason: "draining", job_id: "j2", version: "v1.0.0" });
    expect(live.ended).toBe(false);
    expect(pool.runtimeSnapshot().rejectedJobs).toBe(1);
  });

  test("drained resolves only when the last live session ends", async () => {
    const { pool, events } = makePool();
    const a = pool.startSession({ jobId: "a" });
    const b = pool.startSession({ jobId: "b" });
    pool.beginDrain();
    let done = false;
    void pool.drained.then(() => {
      done = true;
    });
    a.end();
    await Promise.resolve();
    expect(done).toBe(false);
    expect(pool.state).toBe("draining");
    b.end();
    await pool.drained;
    expect(done).toBe(true);
    expect(pool.state).toBe("drained");
    expect(await events("deployment.drain_completed")).toHaveLength(1);
  });

  test("drain timeout marks the drain stuck, kills nothing, and records the live sessions' ages", async () => {
    vi.useFakeTimers();
    try {
      const { pool, clock, events } = makePool({ drainTimeoutMs: 60_000 });
      const s = pool.startSession({ jobId: "long-call", metadata: { tenant: "acme" } });
      clock.advance(30);
      pool.beginDrain();
      clock.advance(60);
      vi.advanceTimersByTime(60_000);
      const snap = pool.runtimeSnapshot();
      expect(snap.drainStuck).toBe(true);
      expect(snap.toJSON().drain_stuck).toBe(true);
      expect(snap.stuckSessions).toEqual([expect.objectContaining({ job_id: "long-call", tenant: "acme", age_seconds: 90 })]);
      expect(s.ended).toBe(false);
      expect(pool.activeSessions).toBe(1);
      const stuck = await events("deployment.drain_stuck");
      expect(stuck).toHaveLength(1);
      expect(stuck[0]).toMatchObject({ result: "stuck", active_sessions: 1, sessions: [{ job_id: "long-call", tenant: "acme", age_seconds: 90 }] });
      expect(await pool.metrics.scrape()).toMatch(/^openrtc_drain_stuck 1$/m);
      s.end();
      expect(pool.state).toBe("drained");
      expect(pool.drainStuck).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("membership", () => {
  test("a worker whose version is not active rejects new jobs with reason membership and says member:false", async () => {
    const g = gate(true);
    const { pool, events } = makePool({ membership: g });
    pool.markReady();
    const live = pool.startSession({ jobId: "before" });
    g.set(false);
    expect(pool.member).toBe(false);
    expect(pool.ready).toBe(false);
    expect(pool.accepting).toBe(false);
    expect(() => pool.startSession({ jobId: "after" })).toThrow(expect.objectContaining({ reason: "membership" }));
    expect(pool.runtimeSnapshot().toJSON().member).toBe(false);
    expect(live.ended).toBe(false);
    const rejected = await events("worker.rejected");
    expect(rejected[0]).toMatchObject({ reason: "membership", job_id: "after" });
    expect(await events("worker.membership_changed")).toEqual([expect.objectContaining({ member: false })]);
    g.set(true);
    expect(pool.startSession({ jobId: "again" }).info.jobId).toBe("again");
  });

  test("draining wins over membership as the reported reason", () => {
    const { pool } = makePool({ membership: gate(false) });
    pool.beginDrain();
    expect(() => pool.startSession({ jobId: "x" })).toThrow(expect.objectContaining({ reason: "draining" }));
  });
});

describe("malformed tenant", () => {
  test("is rejected with a clear error and recorded, not re-labelled", async () => {
    const { pool, events } = makePool();
    expect(() => pool.startSession({ jobId: "j1", metadata: '{"tenant":"acme corp!"}' })).toThrow(/malformed tenant/);
    expect(pool.activeSessions).toBe(0);
    expect(await events("worker.rejected")).toEqual([expect.objectContaining({ reason: "invalid_metadata", job_id: "j1" })]);
  });
});

describe("snapshot", () => {
  test("toJSON has exactly the contract keys", () => {
    const { pool } = makePool();
    pool.startSession({ jobId: "j1", agentName: "a", metadata: { tenant: "t" } });
    expect(Object.keys(pool.runtimeSnapshot().toJSON())).toEqual([...SNAPSHOT_KEYS]);
    expect(JSON.parse(JSON.stringify(pool.runtimeSnapshot()))).toMatchObject({
      worker_id: "w-1",
      deployment_version: "v1.0.0",
      draining: false,
      state: "starting",
      active_sessions: 1,
      sessions_by_agent: { a: 1 },
      sessions_by_tenant: { t: 1 },
      drain_started_at: null,
      drain_stuck: false,
      member: true,
    });
  });

  test("timestamps use the pool clock in Unix seconds", () => {
    const { pool, clock } = makePool();
    clock.advance(12.5);
    pool.beginDrain();
    const json = pool.runtimeSnapshot().toJSON();
    expect(json.uptime_seconds).toBe(12.5);
    expect(json.drain_started_at).toBe(json.timestamp);
  });
});

describe("close", () => {
  test("refuses to close with live calls unless dropping them is explicit; then counts and records them", async () => {
    const { pool, sink } = makePool();
    pool.startSession({ jobId: "a" });
    pool.startSession({ jobId: "b" });
    await expect(pool.close()).rejects.toThrow(/refusing to close with 2 live call/);
    expect(pool.activeSessions).toBe(2);
    const result = await pool.close({ dropLiveSessions: true, actor: "operator" });
    expect(result.droppedSessions).toBe(2);
    expect(pool.state).toBe("closed");
    const exited = sink.records.filter((r) => r.event === "worker.exited");
    expect(exited).toEqual([expect.objectContaining({ result: "dropped", dropped_sessions: 2, actor: "operator" })]);
    expect(await pool.metrics.scrape()).toMatch(/^openrtc_dropped_sessions_total 2$/m);
  });

  test("a clean close after drain records zero dropped", async () => {
    const { pool, sink } = makePool();
    pool.beginDrain();
    await pool.close();
    await pool.close();
    expect(sink.records.filter((r) => r.event === "worker.exited")).toEqual([expect.objectContaining({ result: "ok", dropped_sessions: 0 })]);
  });
});

describe("AgentPool.adopt: settings read after the pool was built (Kubernetes' label and manifest)", () => {
  test("an untagged pool adopts a version: snapshot, metrics and the audit records that follow carry it", async () => {
    const { pool, events } = makePool({ deploymentVersion: undefined });
    pool.auditLog.emit("deployment.started", { target: "worker" });
    pool.adopt({ deploymentVersion: " v2.0.0 " });
    expect(pool.deploymentVersion).toBe("v2.0.0");
    expect(pool.runtimeSnapshot().toJSON().deployment_version).toBe("v2.0.0");
    pool.markReady();
    pool.startSession({ jobId: "j1" }).end();
    const records = await events();
    expect(records[0]!.version).toBeNull();
    expect(records.slice(1).every((r) => r.version === "v2.0.0")).toBe(true);
    expect(await pool.metrics.registry.getSingleMetricAsString("openrtc_worker_info")).toContain('deployment_version="v2.0.0"');
  });

  test("a gate adopted before serving is asked at once: no manifest → not a member, recorded, /readyz reason membership", async () => {
    const { pool, events } = makePool();
    const g = gate(false);
    const changes: boolean[] = [];
    pool.on("membership", (member) => changes.push(member));
    pool.adopt({ membership: g });
    expect(pool.member).toBe(false);
    expect(pool.rejectReason()).toBe("membership");
    expect(changes).toEqual([false]);
    expect((await events("worker.membership_changed")).map((r) => r.result)).toEqual(["not_member"]);
    g.set(true);
    expect(pool.member).toBe(true);
  });

  test("a version adopted under a gate re-asks the gate for that version", () => {
    const listed = new Set(["v2.0.0"]);
    const { pool } = makePool({
      deploymentVersion: undefined,
      membership: { isMember: (v) => v !== null && listed.has(v), subscribe: () => () => {} },
    });
    expect(pool.member).toBe(false);
    pool.adopt({ deploymentVersion: "v2.0.0" });
    expect(pool.member).toBe(true);
  });

  test("refused once the worker serves or saw a job, once the LiveKit binding read the pool, over a version or gate set in code, and for a bad version", () => {
    const tagged = makePool().pool;
    expect(() => tagged.adopt({ deploymentVersion: "v2.0.0" })).toThrow(/already runs "v1.0.0".*never replaced/);
    const gated = makePool({ membership: gate(true) }).pool;
    expect(() => gated.adopt({ membership: gate(true) })).toThrow(/already has a membership gate/);
    const serving = makePool({ deploymentVersion: undefined }).pool;
    serving.markReady();
    expect(() => serving.adopt({ deploymentVersion: "v2.0.0" })).toThrow(/only be adopted before the worker serves/);
    const bound = makePool({ deploymentVersion: undefined }).pool;
    settlePoolSettings(bound, "the LiveKit binding (runApp / bindAgentPool)");
    expect(() => bound.adopt({ deploymentVersion: "v2.0.0" })).toThrow(/LiveKit binding .* already read the pool's version and gate; attach the platform adapter before it/);
    const bad = makePool({ deploymentVersion: undefined }).pool;
    expect(() => bad.adopt({ deploymentVersion: "v2\u0007" })).toThrow(/control character/);
    expect(bad.deploymentVersion).toBeNull();
  });
});
