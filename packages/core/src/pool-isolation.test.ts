import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { AgentPool } from "./pool.ts";
import type { Logger } from "./logger.ts";
import { ManifestGate, signManifest } from "./manifest.ts";
import { manualClock, memorySink } from "./testing/memory-sink.ts";

function recordingLogger(): Logger & { lines: { level: string; message: string; fields: object }[] } {
  const lines: { level: string; message: string; fields: object }[] = [];
  const at = (level: string) => (fields: object, message: string) => lines.push({ level, message, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

function makePool(options: ConstructorParameters<typeof AgentPool>[0] = {}) {
  const sink = memorySink();
  const clock = manualClock();
  const logger = recordingLogger();
  const pool = new AgentPool({ deploymentVersion: "v1.0.0", workerId: "w-1", clock, auditSinks: [sink], logger, ...options });
  const events = async (type?: string) => {
    await pool.auditLog.flush();
    return sink.records.filter((r) => type === undefined || r.event === type);
  };
  return { pool, sink, clock, logger, events };
}

async function scrape(pool: AgentPool, name: string): Promise<string[]> {
  return (await pool.metrics.scrape()).split("\n").filter((line) => line.startsWith(name));
}

describe("pool events: delivered after the state change, each listener isolated", () => {
  test("a throwing sessionEnded listener does not leave the pool draining: drained resolves", async () => {
    const { pool, logger } = makePool();
    pool.on("sessionEnded", () => {
      throw new Error("listener boom");
    });
    const session = pool.startSession({ jobId: "j" });
    pool.beginDrain();
    expect(session.end()).toBe(true);
    await pool.drained;
    expect(pool.state).toBe("drained");
    expect(logger.lines).toContainEqual(expect.objectContaining({ level: "error", fields: { event: "sessionEnded", err: "Error: listener boom" } }));
    expect(await scrape(pool, "openrtc_listener_errors_total")).toContain('openrtc_listener_errors_total{event="sessionEnded"} 1');
  });

  test("a throwing sessionStarted listener does not make startSession throw; the session is counted once and live", () => {
    const { pool } = makePool();
    pool.on("sessionStarted", () => {
      throw new Error("boom");
    });
    const session = pool.startSession({ jobId: "j" });
    expect(pool.activeSessions).toBe(1);
    expect(pool.session("j")).toBe(session);
  });

  test("a throwing state listener does not stop beginDrain: drain_started is written, the listener saw the finished change", async () => {
    const { pool, events } = makePool();
    const seen: { state: string; draining: boolean; drainStartedAt: number | null }[] = [];
    pool.on("state", (state) => {
      seen.push({ state, draining: pool.draining, drainStartedAt: pool.runtimeSnapshot().drainStartedAt });
      throw new Error("state boom");
    });
    pool.startSession({ jobId: "j" });
    expect(() => pool.beginDrain({ actor: "op" })).not.toThrow();
    expect(await events("deployment.drain_started")).toHaveLength(1);
    expect(seen).toEqual([{ state: "draining", draining: true, drainStartedAt: expect.any(Number) }]);
  });

  test("an async listener's rejection is caught and counted, never an unhandled rejection", async () => {
    const { pool } = makePool();
    pool.on("rejected", async () => {
      throw new Error("async boom");
    });
    pool.beginDrain();
    expect(() => pool.startSession({ jobId: "j" })).toThrow(/draining/);
    await expect.poll(async () => (await scrape(pool, "openrtc_listener_errors_total")).join()).toContain('event="rejected"} 1');
  });

  test("a sessionEnded listener sees the registry already updated; one that drains from inside is delivered in order", async () => {
    const { pool } = makePool();
    const order: string[] = [];
    pool.on("sessionEnded", (info) => {
      order.push(`ended ${info.jobId} active=${pool.activeSessions}`);
      pool.beginDrain({ actor: "listener" });
    });
    pool.on("state", (state) => order.push(`state ${state}`));
    pool.startSession({ jobId: "a" }).end();
    await pool.drained;
    expect(order).toEqual(["ended a active=0", "state draining", "state drained"]);
  });

  test("once listeners still fire once", () => {
    const { pool } = makePool();
    let count = 0;
    pool.once("sessionStarted", () => count++);
    pool.startSession({ jobId: "a" });
    pool.startSession({ jobId: "b" });
    expect(count).toBe(1);
    expect(pool.listenerCount("sessionStarted")).toBe(0);
  });

  test("a throwing logger never reaches the caller", () => {
    const throwing: Logger = {
      debug: () => {},
      info: () => {},
      warn: () => {
        throw new Error("log boom");
      },
      error: () => {
        throw new Error("log boom");
      },
    };
    const { pool } = makePool({ logger: throwing, tenantPolicy: "label" });
    pool.on("sessionStarted", () => {
      throw new Error("listener boom");
    });
    expect(() => pool.startSession({ jobId: "j", metadata: { tenant: "acme corp" } })).not.toThrow();
  });
});

describe("hooks", () => {
  test("a throwing tracer costs the span, never the call or the drain", async () => {
    const boom = () => {
      throw new Error("tracer boom");
    };
    const span = { setAttribute: boom, setStatus: boom, end: boom, addEvent: boom };
    const tracer = { startSpan: () => span, startActiveSpan: boom } as never;
    const { pool, logger } = makePool({ tracer });
    const a = pool.startSession({ jobId: "a" });
    pool.beginDrain();
    a.end();
    await pool.drained;
    const broken = makePool({ tracer: { startSpan: boom, startActiveSpan: boom } as never });
    expect(() => broken.pool.startSession({ jobId: "b" }).end()).not.toThrow();
    expect(logger.lines.some((l) => l.message.includes("a hook threw"))).toBe(true);
  });

  test("a job refused for membership says why (no_manifest)", () => {
    const gate = new ManifestGate({ secrets: ["s"], logger: recordingLogger() });
    const { pool } = makePool({ membership: gate });
    expect(() => pool.startSession({ jobId: "j" })).toThrow(/no valid manifest has arrived \(the gate fails closed: no_manifest\)/);
  });
});

describe("close and drained", () => {
  test("close({ dropLiveSessions }) while draining writes worker.exited result=dropped and no drain_completed", async () => {
    const { pool, events } = makePool();
    pool.startSession({ jobId: "a" });
    pool.beginDrain();
    const result = await pool.close({ dropLiveSessions: true });
    expect(result.droppedSessions).toBe(1);
    const names = (await events()).map((r) => `${r.event}:${r.result}`);
    expect(names).toContain("worker.exited:dropped");
    expect(names).not.toContain("deployment.drain_completed:ok");
    await pool.drained;
    expect(pool.state).toBe("closed");
  });

  test("drained resolves when a pool is closed without a drain", async () => {
    const { pool } = makePool();
    pool.markReady();
    await pool.close();
    await pool.drained;
    expect(pool.state).toBe("closed");
  });
});

describe("deploymentVersion validation", () => {
  test.each([
    ["a newline", "v1\nforged", /control character \(U\+000A at index 2\)/],
    ["a NUL", "v1\u0000", /control character \(U\+0000/],
    ["an escape", "v\u001b[31m", /control character \(U\+001B/],
    ["a DEL", "v1\u007f", /control character \(U\+007F/],
    ["a line separator", "v1\u2028x", /control character \(U\+2028/],
  ])("a version with %s is refused with what was wrong and what to do", (_what, version, message) => {
    expect(() => new AgentPool({ deploymentVersion: version })).toThrow(message);
    expect(() => new AgentPool({ deploymentVersion: version })).toThrow(/use a plain version such as "v2\.0\.0"/);
  });

  test("at most 128 characters", () => {
    expect(new AgentPool({ deploymentVersion: "v".repeat(128) }).deploymentVersion).toHaveLength(128);
    expect(() => new AgentPool({ deploymentVersion: "v".repeat(129) })).toThrow(/129 characters, more than 128; use a short version/);
  });
});

describe("tenantPolicy", () => {
  test('default "reject" refuses a malformed tenant', () => {
    const { pool } = makePool();
    expect(() => pool.startSession({ jobId: "j", metadata: JSON.stringify({ tenant: "acme corp" }) })).toThrow(/malformed tenant/);
  });

  test('"label" takes the call under tenant="invalid", keeps the raw value, counts it', async () => {
    const { pool } = makePool({ tenantPolicy: "label" });
    const session = pool.startSession({ jobId: "j", metadata: JSON.stringify({ tenant: "acme corp", plan: "gold" }) });
    expect(session.info.tenant).toBe("invalid");
    expect(session.info.invalidTenant).toBe("acme corp");
    expect(session.info.metadata).toMatchObject({ tenant: "invalid", invalid_tenant: "acme corp", plan: "gold" });
    expect(pool.runtimeSnapshot().sessionsByTenant).toEqual({ invalid: 1 });
    expect(await scrape(pool, "openrtc_invalid_tenants_total")).toContain("openrtc_invalid_tenants_total 1");
  });

  test("an unknown policy is refused", () => {
    expect(() => new AgentPool({ tenantPolicy: "drop" as never })).toThrow(/tenantPolicy must be "reject" or "label"/);
  });
});

describe("membership through a ManifestGate", () => {
  const SECRET = "pool-manifest-secret";

  test("fail closed: no manifest → not a member, reason no_manifest; rejections are audited as worker.manifest_rejected without the secret", async () => {
    const clock = manualClock();
    const gate = new ManifestGate({ secrets: [SECRET], clock, logger: recordingLogger() });
    gate.offer('{"seq": 1, "garbage": true}', "file:/m.json"); // before the pool subscribed: kept and delivered
    const { pool, events } = makePool({ membership: gate, clock });
    expect(pool.member).toBe(false);
    expect(pool.membershipReason).toBe("no_manifest");
    const forged = signManifest({ seq: 2, activeVersions: ["v1.0.0"], issuedAt: clock(), secret: "not-the-secret" });
    gate.offer(forged, "file:/m.json");
    const rejected = await events("worker.manifest_rejected");
    expect(rejected.map((r) => [r.reason, r.seq, r.source])).toEqual([
      ["malformed", 1, "file:/m.json"],
      ["bad_signature", 2, "file:/m.json"],
    ]);
    const text = JSON.stringify(rejected);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(forged.signature);
  });

  test("an expired manifest stops counting: member → not a member with reason manifest_expired", async () => {
    const clock = manualClock();
    const gate = new ManifestGate({ secrets: [SECRET], clock, logger: recordingLogger() });
    gate.offer(signManifest({ seq: 1, activeVersions: ["v1.0.0"], issuedAt: clock(), expiresAt: clock() + 60, secret: SECRET }), "test");
    const { pool, events } = makePool({ membership: gate, clock });
    expect(pool.member).toBe(true);
    clock.advance(61);
    gate.refresh();
    expect(pool.member).toBe(false);
    expect(pool.membershipReason).toBe("manifest_expired");
    const changed = await events("worker.membership_changed");
    expect(changed.at(-1)).toMatchObject({ member: false, reason: "manifest_expired" });
  });

  test("a fail-closed gate read after the pool exists: the trail says no_manifest → not_member (or → member)", async () => {
    const clock = manualClock();
    const gate = new ManifestGate({ secrets: [SECRET], clock, logger: recordingLogger() });
    const { pool, events } = makePool({ membership: gate, clock });
    const seen: boolean[] = [];
    pool.on("membership", (member) => seen.push(member));
    gate.offer(signManifest({ seq: 1, activeVersions: ["v2.0.0"], issuedAt: clock(), secret: SECRET }), "file");
    expect(pool.membershipReason).toBe("not_member");
    gate.offer(signManifest({ seq: 2, activeVersions: ["v2.0.0", "v3"], issuedAt: clock(), secret: SECRET }), "file");
    gate.offer(signManifest({ seq: 3, activeVersions: ["v1.0.0"], issuedAt: clock(), secret: SECRET }), "file");
    const changed = await events("worker.membership_changed");
    expect(changed.map((r) => [r.member, r.reason])).toEqual([
      [false, "not_member"],
      [true, undefined],
    ]);
    expect(seen).toEqual([true]);
  });

  test("a throwing gate fails closed", () => {
    let calls = 0;
    let listener = () => {};
    const gate = {
      isMember: () => {
        if (calls++ > 0) throw new Error("gate broke");
        return true;
      },
      subscribe: (l: () => void) => {
        listener = l;
        return () => {};
      },
    };
    const { pool } = makePool({ membership: gate });
    expect(pool.member).toBe(true);
    listener();
    expect(pool.member).toBe(false);
  });

  test("a state file keeps the seq floor across a restart", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "openrtc-state-"));
    try {
      const stateFile = path.join(dir, "manifest-state.json");
      const clock = manualClock();
      const first = new ManifestGate({ secrets: [SECRET], clock, stateFile, logger: recordingLogger() });
      expect(first.offer(signManifest({ seq: 7, activeVersions: ["v2"], issuedAt: clock(), secret: SECRET }), "f").accepted).toBe(true);
      const restarted = new ManifestGate({ secrets: [SECRET], clock, stateFile, logger: recordingLogger() });
      const old = restarted.offer(signManifest({ seq: 1, activeVersions: ["v1.0.0"], issuedAt: clock(), secret: SECRET }), "f");
      expect(old).toMatchObject({ accepted: false, code: "stale_seq" });
      expect(restarted.isMember("v1.0.0")).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
