import { describe, expect, test, vi } from "vitest";
import { Registry } from "prom-client";
import { AgentPool } from "./pool.ts";
import { silentLogger } from "./logger.ts";
import { METRIC_NAMES, OTHER_TENANT } from "./metrics.ts";
import { manualClock, memorySink } from "./testing/memory-sink.ts";

/** Parses Prometheus text exposition into name{labels} → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable exposition line: ${line}`);
    out.set(`${m[1]}${m[2] ?? ""}`, Number(m[3]));
  }
  return out;
}

function makePool(options: ConstructorParameters<typeof AgentPool>[0] = {}) {
  return new AgentPool({ deploymentVersion: "v2.0.0", workerId: "w-7", logger: silentLogger, clock: manualClock(), ...options });
}

describe("metrics", () => {
  test("every contract metric is exposed with its type, from a private registry", async () => {
    const pool = makePool();
    const text = await pool.metrics.scrape();
    const types: Record<string, string> = {
      workerInfo: "gauge",
      draining: "gauge",
      accepting: "gauge",
      activeSessions: "gauge",
      sessionsStarted: "counter",
      sessionsEnded: "counter",
      sessionDuration: "histogram",
      jobsRejected: "counter",
      drainStuck: "gauge",
      droppedSessions: "counter",
      auditEvents: "counter",
      auditSinkErrors: "counter",
    };
    for (const [key, name] of Object.entries(METRIC_NAMES)) {
      expect(text).toContain(`# TYPE ${name} ${types[key]}`);
    }
    expect(parse(text).get('openrtc_worker_info{deployment_version="v2.0.0",worker_id="w-7"}')).toBe(1);
    // Nothing registered globally behind the user's back.
    const { register } = await import("prom-client");
    expect(await register.getMetricsAsJSON()).toEqual([]);
  });

  test("a user registry receives the metrics", async () => {
    const registry = new Registry();
    makePool({ metrics: { registry } });
    expect(await registry.metrics()).toContain("openrtc_active_sessions");
  });

  test("session, drain and rejection metrics follow the pool", async () => {
    const clock = manualClock();
    const pool = makePool({ clock });
    pool.markReady();
    const a = pool.startSession({ jobId: "a", metadata: { tenant: "acme" } });
    pool.startSession({ jobId: "b", metadata: { tenant: "acme" } });
    const c = pool.startSession({ jobId: "c", metadata: { tenant: "zeta" } });
    clock.advance(42);
    a.end({ status: "success" });
    c.end({ status: "failed" });
    let m = parse(await pool.metrics.scrape());
    expect(m.get('openrtc_active_sessions{tenant="acme"}')).toBe(1);
    expect(m.get('openrtc_active_sessions{tenant="zeta"}')).toBe(0);
    expect(m.get('openrtc_sessions_started_total{tenant="acme"}')).toBe(2);
    expect(m.get('openrtc_sessions_ended_total{tenant="acme",status="success"}')).toBe(1);
    expect(m.get('openrtc_sessions_ended_total{tenant="zeta",status="failed"}')).toBe(1);
    expect(m.get('openrtc_session_duration_seconds_bucket{le="60",status="success"}')).toBe(1);
    expect(m.get('openrtc_session_duration_seconds_bucket{le="30",status="success"}')).toBe(0);
    expect(m.get('openrtc_session_duration_seconds_sum{status="success"}')).toBe(42);
    expect(m.get("openrtc_draining")).toBe(0);
    expect(m.get("openrtc_accepting")).toBe(1);
    pool.beginDrain();
    expect(() => pool.startSession({ jobId: "d" })).toThrow();
    expect(() => pool.startSession({ jobId: "e" })).toThrow();
    m = parse(await pool.metrics.scrape());
    expect(m.get("openrtc_draining")).toBe(1);
    expect(m.get("openrtc_accepting")).toBe(0);
    expect(m.get('openrtc_jobs_rejected_total{reason="draining"}')).toBe(2);
    expect(m.get('openrtc_jobs_rejected_total{reason="membership"}')).toBe(0);
    expect(m.get('openrtc_audit_events_total{event="deployment.drain_started"}')).toBe(1);
    expect(m.get('openrtc_audit_events_total{event="worker.rejected"}')).toBe(2);
  });

  test("tenant label cardinality is capped; later tenants fold into __other__ and totals stay exact", async () => {
    const pool = makePool({ metrics: { maxTenantLabels: 3 } });
    for (let i = 0; i < 10; i++) pool.startSession({ jobId: `j${i}`, metadata: { tenant: `t${i}` } });
    pool.session("j9")?.end();
    const m = parse(await pool.metrics.scrape());
    const tenants = [...m.keys()].filter((k) => k.startsWith("openrtc_active_sessions{")).map((k) => /tenant="([^"]+)"/.exec(k)?.[1]);
    expect(tenants.sort()).toEqual([OTHER_TENANT, "t0", "t1", "t2"].sort());
    expect(m.get(`openrtc_active_sessions{tenant="${OTHER_TENANT}"}`)).toBe(6);
    expect(m.get(`openrtc_sessions_started_total{tenant="${OTHER_TENANT}"}`)).toBe(7);
    // The snapshot keeps exact per-tenant counts.
    expect(Object.keys(pool.runtimeSnapshot().sessionsByTenant)).toHaveLength(9);
  });

  test("invalid maxTenantLabels is refused", () => {
    expect(() => makePool({ metrics: { maxTenantLabels: 0 } })).toThrow(/maxTenantLabels/);
  });

  test("the audit event label is bounded: core types, then 32 custom ones shaped like area.name, the rest under __other__", async () => {
    const pool = makePool();
    pool.auditLog.emit("deployment.started", { target: "fleet" });
    for (let i = 0; i < 40; i++) pool.auditLog.emit(`custom.event_${i}`);
    pool.auditLog.emit("Not A Name\n{}");
    pool.auditLog.emit(`x.${"y".repeat(100)}`);
    const m = parse(await pool.metrics.scrape());
    const labels = [...m.keys()].filter((k) => k.startsWith("openrtc_audit_events_total{"));
    expect(m.get('openrtc_audit_events_total{event="deployment.started"}')).toBe(1);
    expect(m.get('openrtc_audit_events_total{event="custom.event_31"}')).toBe(1);
    expect(m.get('openrtc_audit_events_total{event="custom.event_32"}')).toBeUndefined();
    expect(m.get('openrtc_audit_events_total{event="__other__"}')).toBe(10);
    expect(labels.length).toBeLessThanOrEqual(1 + 32 + 1 + 2);
  });

  test("audit sink errors are counted by sink", async () => {
    let fail = true;
    const pool = makePool({
      auditSinks: [
        {
          name: "flaky",
          write: () => (fail ? Promise.reject(new Error("disk full")) : Promise.resolve()),
        },
        memorySink("ok"),
      ],
    });
    pool.auditLog.emit("deployment.started", { target: "fleet" });
    await vi.waitFor(() => expect(pool.auditLog.stats().sinks.find((s) => s.name === "flaky")?.errors).toBeGreaterThanOrEqual(1));
    fail = false;
    await pool.auditLog.flush({ timeoutMs: 5000 });
    const m = parse(await pool.metrics.scrape());
    expect(m.get('openrtc_audit_sink_errors_total{sink="flaky"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('openrtc_audit_sink_errors_total{sink="ok"}')).toBeUndefined();
  });
});
