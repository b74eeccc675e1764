// `openrtc fleet --prometheus` against a real Prometheus (openrtc.rules.yml loaded) scraping real
// workers through a blue-green deploy: both versions serving, v1 draining, v1 drained and gone
// (exited clean: done), then a v2 worker vanishing with a call (dropped).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createControlServer, type ControlServer } from "../src/control-server.ts";
import { runFleet } from "../src/fleet-cli.ts";
import { fleetFallbackQueries, fleetQueries, prometheusSource } from "../src/fleet-sources.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool, type Session } from "../src/pool.ts";
import { RULES_FILE, freePort, startPrometheus, type PrometheusServer } from "./prometheus.ts";

interface Worker {
  pool: AgentPool;
  server: ControlServer;
  instance: string;
  calls: Session[];
}

const workers: Worker[] = [];
let prometheus: PrometheusServer | undefined;

async function startWorker(version: string, id: string, calls: number, port = 0): Promise<Worker> {
  const pool = new AgentPool({ deploymentVersion: version, workerId: id, logger: silentLogger });
  const server = await createControlServer(pool, { port });
  pool.markReady();
  const w: Worker = { pool, server, instance: new URL(server.url).host, calls: [] };
  for (let i = 0; i < calls; i++) w.calls.push(pool.startSession({ jobId: `${id}-${i}`, metadata: { tenant: "acme" } }));
  workers.push(w);
  return w;
}

function prom(): PrometheusServer {
  if (prometheus === undefined) throw new Error("prometheus did not start (see beforeAll)");
  return prometheus;
}

interface Report {
  status: string;
  target: string | null;
  facts: Record<string, boolean>;
  reasons: string[];
  versions: Array<Record<string, unknown>>;
  workers: Array<Record<string, unknown>>;
}

let promUrl = "";

async function status(...extra: string[]): Promise<{ code: number; report: Report; stderr: string }> {
  const out = { stdout: "", stderr: "" };
  const io = { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env: {} };
  const code = await runFleet(["status", "--prometheus", promUrl, "--json", "--window", "5m", ...extra], io);
  return { code, report: JSON.parse(out.stdout) as Report, stderr: out.stderr };
}

/** Polls `fleet status` until `accept` holds (Prometheus sees changes a scrape and an evaluation later). */
async function statusUntil(accept: (r: Report) => boolean, ...extra: string[]): Promise<Report> {
  const deadline = Date.now() + 30_000;
  let last: Report | undefined;
  while (Date.now() < deadline) {
    last = (await status(...extra)).report;
    if (accept(last)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`fleet status never matched; last ${JSON.stringify(last)}`);
}

const row = (r: Report, v: string) => r.versions.find((x) => x.version === v);

let v1: Worker;
let v2a: Worker;
let v2b: Worker;

describe("openrtc fleet --prometheus with the shipped rules", () => {
  beforeAll(async () => {
    v1 = await startWorker("v1", "p-v1", 2);
    v2a = await startWorker("v2", "p-v2a", 1);
    v2b = await startWorker("v2", "p-v2b", 1);
    prometheus = await startPrometheus({ targets: workers.map((w) => w.instance), ruleFiles: [RULES_FILE], scrapeInterval: "1s", evaluationInterval: "1s" });
    promUrl = prometheus.url;
  });

  afterAll(async () => {
    await prometheus?.stop();
    for (const w of workers) {
      await w.server.close().catch(() => undefined);
      await w.pool.close({ dropLiveSessions: true }).catch(() => undefined);
    }
  });

  it("every query it sends is valid PromQL that Prometheus answers", { timeout: 60_000 }, async () => {
    await prom().waitFor("openrtc:worker_active_sessions", (s) => s.length === 3, { timeoutMs: 45_000 });
    for (const expr of Object.values({ ...fleetQueries("5m"), ...fleetFallbackQueries() })) await expect(prom().query(expr)).resolves.toBeInstanceOf(Array);
  });

  it("both versions serving: in progress, per-version workers and calls", async () => {
    const r = await statusUntil((x) => row(x, "v1")?.live_calls === 2 && row(x, "v2")?.live_calls === 2, "--version", "v2");
    expect(r).toMatchObject({ target: "v2", status: "in_progress", facts: { all_on_target: false, old_drained_and_exited: false, no_call_dropped: true } });
    expect(row(r, "v1")).toMatchObject({ workers: 1, serving: 1, draining: 0, exited: 0, live_calls: 2, dropped_calls: 0 });
    expect(row(r, "v2")).toMatchObject({ workers: 2, serving: 2, live_calls: 2 });
    expect(r.reasons).toContain("1 old-version worker(s) still serving (v1)");
  });

  it("v1 draining: rejections, calls left, call ages read from the worker", async () => {
    v1.pool.beginDrain({ actor: "test" });
    expect(() => v1.pool.startSession({ jobId: "late", metadata: { tenant: "acme" } })).toThrow();
    const r = await statusUntil((x) => row(x, "v1")?.draining === 1 && row(x, "v1")?.rejected_jobs === 1, "--version", "v2");
    expect(row(r, "v1")).toMatchObject({ serving: 0, draining: 1, live_calls: 2, draining_calls: 2 });
    expect(row(r, "v1")?.oldest_call_seconds).toEqual(expect.any(Number));
    expect(r.reasons.some((s) => s.startsWith("still draining: 2 call(s) left on 1 worker(s), oldest "))).toBe(true);
    // Without --version the one version accepting calls is the target.
    expect((await status()).report.target).toBe("v2");
  });

  it("v1 drained and gone: exited clean, deploy done", async () => {
    for (const c of v1.calls) c.end({ status: "success" });
    await statusUntil((x) => row(x, "v1")?.live_calls === 0, "--version", "v2");
    await v1.pool.close();
    await v1.server.close();
    const r = await statusUntil((x) => row(x, "v1")?.exited === 1, "--version", "v2");
    expect(r).toMatchObject({ status: "done", facts: { all_on_target: true, old_drained_and_exited: true, no_call_dropped: true } });
    expect(r.workers.find((w) => w.worker_id === "p-v1")).toMatchObject({ phase: "exited", note: "exited clean", dropped_sessions: 0 });
    expect((await status("--version", "v2")).code).toBe(0);
  });

  it("a v2 worker vanishing with a call: dropped, exit 1", async () => {
    await v2b.server.close();
    const r = await statusUntil((x) => x.status === "dropped", "--version", "v2");
    expect(r.facts.no_call_dropped).toBe(false);
    expect(r.workers.find((w) => w.worker_id === "p-v2b")).toMatchObject({ phase: "exited", note: "vanished with 1 session(s)", dropped_sessions: 1 });
    expect(r.reasons[0]).toContain("1 call(s) dropped: p-v2b (v2) vanished with 1 session(s)");
    const again = await status("--version", "v2");
    expect(again.code).toBe(1);
    void v2a;
  });
});

describe("openrtc fleet --prometheus through a rollback (v2 → v1), with a target that is not up yet", () => {
  let rollbackProm: PrometheusServer | undefined;
  let v2: Worker;
  let v1old: Worker;
  let port: number;

  beforeAll(async () => {
    v2 = await startWorker("v2", "r-v2", 2);
    v1old = await startWorker("v1", "r-v1-a", 0);
    // A target nothing listens on yet: Prometheus scrapes it as up == 0.
    port = await freePort();
    rollbackProm = await startPrometheus({ targets: [v2.instance, v1old.instance, `127.0.0.1:${port}`], ruleFiles: [RULES_FILE], scrapeInterval: "1s", evaluationInterval: "1s" });
    promUrl = rollbackProm.url;
    await rollbackProm.waitFor("openrtc:worker_active_sessions", (x) => x.length === 2, { timeoutMs: 45_000 });
  }, 60_000);

  afterAll(async () => {
    await rollbackProm?.stop();
    for (const w of workers) {
      await w.server.close().catch(() => undefined);
      await w.pool.close({ dropLiveSessions: true }).catch(() => undefined);
    }
  });

  it("a target never seen as a worker is unreachable and keeps the rollback from done", async () => {
    v2.pool.beginDrain({ actor: "test", reason: "rollback" });
    const r = await statusUntil((x) => row(x, "v2")?.draining === 1 && x.workers.some((w) => w.phase === "unreachable"), "--version", "v1");
    expect(r).toMatchObject({ status: "in_progress", facts: { no_call_dropped: true } });
    expect(r.reasons).toContain(`1 worker(s) unreachable: http://127.0.0.1:${port}`);
    expect(row(r, "v2")).toMatchObject({ draining: 1, live_calls: 2 });
    expect(row(r, "v1")).toMatchObject({ serving: 1, live_calls: 0 });
  });

  it("the v1 worker comes up on that target; v2 drains and exits: rollback done", async () => {
    await startWorker("v1", "r-v1-b", 1, port);
    await statusUntil((x) => row(x, "v1")?.serving === 2 && !x.workers.some((w) => w.phase === "unreachable"), "--version", "v1");
    for (const c of v2.calls) c.end({ status: "success" });
    await statusUntil((x) => row(x, "v2")?.live_calls === 0, "--version", "v1");
    await v2.pool.close();
    await v2.server.close();
    const r = await statusUntil((x) => x.status === "done", "--version", "v1");
    expect(r).toMatchObject({ target: "v1", facts: { all_on_target: true, old_drained_and_exited: true, no_call_dropped: true } });
    expect(row(r, "v2")).toMatchObject({ workers: 1, exited: 1, live_calls: 0, dropped_calls: 0 });
    expect(row(r, "v1")).toMatchObject({ workers: 2, serving: 2, live_calls: 1 });
  });
});

describe("openrtc fleet --prometheus without the recording rules loaded", () => {
  let bare: PrometheusServer | undefined;
  let w: Worker;

  beforeAll(async () => {
    w = await startWorker("v1", "n-v1", 2);
    bare = await startPrometheus({ targets: [w.instance], scrapeInterval: "1s", evaluationInterval: "1s" });
    promUrl = bare.url;
    await bare.waitFor("openrtc_worker_info", (x) => x.length === 1, { timeoutMs: 45_000 });
  }, 60_000);

  afterAll(async () => {
    await bare?.stop();
    await w.server.close().catch(() => undefined);
    await w.pool.close({ dropLiveSessions: true }).catch(() => undefined);
  });

  it("live calls come from the raw series (the fallback round)", async () => {
    const r = await statusUntil((x) => row(x, "v1")?.live_calls === 2);
    expect(row(r, "v1")).toMatchObject({ workers: 1, serving: 1, live_calls: 2 });
    const readings = await prometheusSource({ url: promUrl, window: "5m", sessions: false }).read();
    expect(readings).toEqual([expect.objectContaining({ kind: "present", workerId: "n-v1", activeSessions: 2 })]);
  });
});
