// A real Prometheus, loaded with the shipped rules, scrapes real workers' /metrics through a
// blue-green switchover: live calls on v1 and v2, v1 draining (and stuck, then drained), a v2
// worker vanishing with a call, another v2 worker closing with a call dropped.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createControlServer, type ControlServer } from "../src/control-server.ts";
import { JobRejectedError } from "../src/drain.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool, type Session } from "../src/pool.ts";
import { CONTRACT_METRICS, RULES_FILE, grafanaToPromQL, readDashboardQueries, requireTool, runTool, startPrometheus, type PromAlert, type PromSample, type PrometheusServer } from "./prometheus.ts";


interface Worker {
  pool: AgentPool;
  server: ControlServer;
  /** host:port, the `instance` label Prometheus gives its series. */
  instance: string;
}

const started: Worker[] = [];
let prometheus: PrometheusServer | undefined;

async function startWorker(deploymentVersion: string, workerId: string, drainTimeoutMs?: number): Promise<Worker> {
  const pool = new AgentPool({
    deploymentVersion,
    workerId,
    logger: silentLogger,
    ...(drainTimeoutMs === undefined ? {} : { drainTimeoutMs }),
  });
  const server = await createControlServer(pool, { port: 0 });
  const worker = { pool, server, instance: new URL(server.url).host };
  started.push(worker);
  pool.markReady();
  return worker;
}

function prom(): PrometheusServer {
  if (prometheus === undefined) throw new Error("prometheus did not start (see beforeAll)");
  return prometheus;
}

/** `{label value: sample value}` of a result, for whole-result comparisons. */
function byLabel(samples: PromSample[], label: string): Record<string, number> {
  return Object.fromEntries(samples.map((s) => [s.metric[label] ?? "", s.value]));
}

function equalsByLabel(label: string, expected: Record<string, number>) {
  return (samples: PromSample[]) => JSON.stringify(sorted(byLabel(samples, label))) === JSON.stringify(sorted(expected));
}

function sorted(record: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

function named(alerts: PromAlert[], name: string): PromAlert[] {
  return alerts.filter((a) => a.labels.alertname === name);
}

let v1: Worker;
let v2a: Worker;
let v2b: Worker;
const v1Calls: Session[] = [];

describe("Prometheus with openrtc.rules.yml scraping real workers", () => {
  beforeAll(async () => {
    // v1's drain is marked stuck quickly so the stuck signal can be seen end to end.
    v1 = await startWorker("v1", "e2e-v1", 250);
    v2a = await startWorker("v2", "e2e-v2a");
    v2b = await startWorker("v2", "e2e-v2b");
    prometheus = await startPrometheus({
      targets: started.map((w) => w.instance),
      ruleFiles: [RULES_FILE],
      scrapeInterval: "1s",
      evaluationInterval: "1s",
    });
  });

  afterAll(async () => {
    await prometheus?.stop();
    for (const worker of started) {
      await worker.server.close().catch(() => undefined);
      await worker.pool.close({ dropLiveSessions: true }).catch(() => undefined);
    }
  });

  // The first scrape shows in queries some seconds after start, hence the longer bounds.
  it("loads every rule and evaluates it without error", { timeout: 60_000 }, async () => {
    const rules = await prom().waitFor("openrtc:versions_accepting:count", (s) => s.length === 1, { timeoutMs: 45_000 });
    expect(rules).toHaveLength(1);
    const loaded = await prom().rules();
    expect(loaded.map((r) => r.name).sort()).toEqual(
      [
        "OpenRTCDrainStuck",
        "OpenRTCDroppedCalls",
        "OpenRTCTwoVersionsServing",
        "OpenRTCWorkerVanishedWithSessions",
        "openrtc:accepting_workers:count_by_version",
        "openrtc:active_sessions:sum_by_version",
        "openrtc:draining_active_sessions:sum_by_version",
        "openrtc:draining_workers:count_by_version",
        "openrtc:jobs_rejected:rate_by_reason",
        "openrtc:versions_accepting:count",
        "openrtc:worker_active_sessions",
        "openrtc:workers:count_by_version",
      ].sort(),
    );
    for (const rule of loaded) {
      expect({ name: rule.name, health: rule.health, lastError: rule.lastError ?? "" }).toEqual({
        name: rule.name,
        health: "ok",
        lastError: "",
      });
    }
  });

  it("scrapes worker_info with the version, worker_id and target labels the joins need", async () => {
    const info = await prom().waitFor("openrtc_worker_info", (s) => s.length === 3);
    expect(info.map((s) => s.metric).sort((a, b) => String(a.worker_id).localeCompare(String(b.worker_id)))).toEqual([
      { __name__: "openrtc_worker_info", job: "openrtc", instance: v1.instance, deployment_version: "v1", worker_id: "e2e-v1" },
      { __name__: "openrtc_worker_info", job: "openrtc", instance: v2a.instance, deployment_version: "v2", worker_id: "e2e-v2a" },
      { __name__: "openrtc_worker_info", job: "openrtc", instance: v2b.instance, deployment_version: "v2", worker_id: "e2e-v2b" },
    ]);
    expect(info.map((s) => s.value)).toEqual([1, 1, 1]);
  });

  it("scrapes a /metrics that promtool check metrics accepts, with every contract metric", async () => {
    const text = await (await fetch(`${v1.server.url}/metrics`)).text();
    for (const name of CONTRACT_METRICS) expect(text).toContain(`# TYPE ${name} `);
    const lint = await runTool(requireTool("promtool"), ["check", "metrics"], { input: text });
    expect({ code: lint.code, output: lint.stdout + lint.stderr }).toEqual({ code: 0, output: "" });
  });

  it("records the version distribution of workers and of live sessions", async () => {
    v1Calls.push(v1.pool.startSession({ jobId: "job-v1-a", agentName: "agent", roomName: "room-a", metadata: { tenant: "acme" } }));
    v1Calls.push(v1.pool.startSession({ jobId: "job-v1-b", agentName: "agent", roomName: "room-b", metadata: { tenant: "globex" } }));
    v2a.pool.startSession({ jobId: "job-v2a-a", agentName: "agent", roomName: "room-c", metadata: { tenant: "acme" } });
    v2b.pool.startSession({ jobId: "job-v2b-a", agentName: "agent", roomName: "room-d", metadata: { tenant: "acme" } });

    await prom().waitFor("openrtc:active_sessions:sum_by_version", equalsByLabel("deployment_version", { v1: 2, v2: 2 }));
    const workers = await prom().waitFor("openrtc:workers:count_by_version", equalsByLabel("deployment_version", { v1: 1, v2: 2 }));
    expect(byLabel(workers, "deployment_version")).toEqual({ v1: 1, v2: 2 });
    const perWorker = await prom().query("openrtc:worker_active_sessions");
    expect(byLabel(perWorker, "worker_id")).toEqual({ "e2e-v1": 2, "e2e-v2a": 1, "e2e-v2b": 1 });
    expect((await prom().query("openrtc:versions_accepting:count"))[0]?.value).toBe(2);
    expect(byLabel(await prom().query("openrtc:accepting_workers:count_by_version"), "deployment_version")).toEqual({ v1: 1, v2: 2 });
    expect(byLabel(await prom().query("openrtc:draining_workers:count_by_version"), "deployment_version")).toEqual({ v1: 0, v2: 0 });
  });

  it("answers every dashboard query, and the stat panels show the switchover", async () => {
    const queries = await readDashboardQueries();
    expect(queries.length).toBeGreaterThan(10);
    const stat = new Map<string, number | undefined>();
    for (const { panel, expr } of queries) {
      const samples = await prom().query(grafanaToPromQL(expr, "1m"));
      stat.set(panel, samples.length === 1 ? samples[0]?.value : undefined);
    }
    expect(Object.fromEntries(
      ["Versions running", "Versions accepting new calls", "Draining workers", "Live sessions on draining workers", "Dropped calls", "Stuck drains"].map((t) => [t, stat.get(t)]),
    )).toEqual({
      "Versions running": 2,
      "Versions accepting new calls": 2,
      "Draining workers": 0,
      "Live sessions on draining workers": 0,
      "Dropped calls": 0,
      "Stuck drains": 0,
    });
  });

  it("holds OpenRTCTwoVersionsServing pending while both versions accept calls", async () => {
    const alerts = await prom().waitForAlerts((a) => named(a, "OpenRTCTwoVersionsServing").length === 1);
    expect(named(alerts, "OpenRTCTwoVersionsServing")[0]).toMatchObject({ state: "pending", labels: { severity: "warning" } });
  });

  it("follows v1's drain: draining workers, calls still finishing, rejections, versions accepting", async () => {
    v1.pool.beginDrain({ actor: "e2e", reason: "v2 rollout" });
    expect(() => v1.pool.startSession({ jobId: "job-v1-late", metadata: { tenant: "acme" } })).toThrow(JobRejectedError);

    await prom().waitFor("openrtc:draining_workers:count_by_version", equalsByLabel("deployment_version", { v1: 1, v2: 0 }));
    await prom().waitFor("openrtc:draining_active_sessions:sum_by_version", equalsByLabel("deployment_version", { v1: 2, v2: 0 }));
    await prom().waitFor("openrtc:versions_accepting:count", (s) => s[0]?.value === 1);
    expect(byLabel(await prom().query("openrtc:accepting_workers:count_by_version"), "deployment_version")).toEqual({ v2: 2 });
    const rejected = await prom().waitFor("openrtc:jobs_rejected:rate_by_reason", (s) => (byLabel(s, "reason").draining ?? 0) > 0);
    expect(byLabel(rejected, "reason").membership).toBe(0);
  });

  it("raises OpenRTCDrainStuck (pending) when v1's drain passes its timeout with calls live", async () => {
    await prom().waitFor(`openrtc_drain_stuck{instance="${v1.instance}"}`, (s) => s[0]?.value === 1);
    const alerts = await prom().waitForAlerts((a) => named(a, "OpenRTCDrainStuck").length === 1);
    expect(named(alerts, "OpenRTCDrainStuck")[0]).toMatchObject({
      state: "pending",
      labels: { instance: v1.instance, deployment_version: "v1", worker_id: "e2e-v1", severity: "warning" },
    });
  });

  it("sees v1 drain to zero calls, which clears the stuck flag", async () => {
    v1Calls[0]?.end({ status: "success" });
    await prom().waitFor("openrtc:draining_active_sessions:sum_by_version", equalsByLabel("deployment_version", { v1: 1, v2: 0 }));
    v1Calls[1]?.end({ status: "cancelled" });
    await prom().waitFor("openrtc:draining_active_sessions:sum_by_version", equalsByLabel("deployment_version", { v1: 0, v2: 0 }));
    expect(v1.pool.state).toBe("drained");
    await prom().waitFor(`openrtc_drain_stuck{instance="${v1.instance}"}`, (s) => s[0]?.value === 0);
    await prom().waitForAlerts((a) => named(a, "OpenRTCDrainStuck").length === 0);
    const ended = await prom().query(`openrtc_sessions_ended_total{instance="${v1.instance}"} > 0`);
    expect(ended.map((s) => [s.metric.tenant, s.metric.status, s.value]).sort()).toEqual([
      ["acme", "success", 1],
      ["globex", "cancelled", 1],
    ]);
  });

  it("fires OpenRTCDroppedCalls when a worker closes with a call still live", async () => {
    const result = await v2a.pool.close({ dropLiveSessions: true, actor: "e2e" });
    expect(result.droppedSessions).toBe(1);
    const alerts = await prom().waitForAlerts((a) => named(a, "OpenRTCDroppedCalls").some((x) => x.state === "firing"));
    expect(named(alerts, "OpenRTCDroppedCalls").map((a) => ({ state: a.state, instance: a.labels.instance }))).toEqual([
      { state: "firing", instance: v2a.instance },
    ]);
    const dropped = (await readDashboardQueries()).find((q) => q.panel === "Dropped calls");
    expect((await prom().query(grafanaToPromQL(dropped?.expr ?? "", "1h")))[0]?.value).toBe(1);
  });

  it("flags the worker that vanished holding a call, not the one that drained to zero first", async () => {
    // Stopping /metrics is what Prometheus sees of a crash: up == 0, every series stale.
    await v1.server.close();
    await v2b.server.close();
    await prom().waitFor(`up{instance=~"${v1.instance}|${v2b.instance}"} == 0`, (s) => s.length === 2);
    const alerts = await prom().waitForAlerts((a) => named(a, "OpenRTCWorkerVanishedWithSessions").length > 0);
    expect(
      named(alerts, "OpenRTCWorkerVanishedWithSessions").map((a) => ({
        state: a.state,
        worker_id: a.labels.worker_id,
        instance: a.labels.instance,
        deployment_version: a.labels.deployment_version,
        value: Number(a.value),
      })),
    ).toEqual([
      // Pending until its 1m `for:` passes; which one depends on how long this run took.
      { state: expect.stringMatching(/^(pending|firing)$/), worker_id: "e2e-v2b", instance: v2b.instance, deployment_version: "v2", value: 1 },
    ]);
    const panel = (await readDashboardQueries()).find((q) => q.panel === "Calls held by vanished workers");
    const held = await prom().query(grafanaToPromQL(panel?.expr ?? ""));
    expect(held.map((s) => [s.metric.worker_id, s.value])).toEqual([["e2e-v2b", 1]]);
    // The live fleet is what is left: v2a only.
    await prom().waitFor("openrtc:workers:count_by_version", equalsByLabel("deployment_version", { v2: 1 }));
  });
});
