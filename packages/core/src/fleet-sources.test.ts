// prometheusSource against a stand-in Prometheus HTTP API: the read sends all of fleetQueries in
// one round (every query in flight before any is answered), turns the sparse answers (flags and
// counters only where non-zero, last calls only for gone workers) into readings, and asks for the
// raw-series fallback only when the recording rule answered nothing. The same queries against a
// real Prometheus: test/fleet-prometheus.test.ts.
import { createServer, type IncomingMessage, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerReading } from "./fleet.ts";
import { fleetFallbackQueries, fleetQueries, prometheusSource } from "./fleet-sources.ts";

type Result = Array<{ metric: Record<string, string>; value: number }>;

interface FakeProm {
  url: string;
  /** Query names in arrival order. */
  asked: string[];
  /** Most requests open at once. */
  maxInFlight: number;
  server: Server;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8").on("data", (c: string) => (text += c));
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

/**
 * Answers each fleet query with `results[name]` (empty when absent). With `holdFor`, no answer is
 * sent until that many queries are open (or 2 s passed): a read that waited for one answer before
 * asking the next would stall there.
 */
async function fakePrometheus(results: Record<string, Result>, options: { window?: string; job?: string; holdFor?: number } = {}): Promise<FakeProm> {
  const byExpr = new Map<string, string>();
  for (const [name, expr] of Object.entries({ ...fleetQueries(options.window ?? "15m", options.job), ...fleetFallbackQueries(options.job) })) byExpr.set(expr, name);
  const fake: FakeProm = { url: "", asked: [], maxInFlight: 0, server: undefined as unknown as Server };
  let inFlight = 0;
  const held: Array<() => void> = [];
  const release = () => held.splice(0).forEach((f) => f());
  fake.server = createServer(async (req, res) => {
    const expr = new URLSearchParams(await body(req)).get("query") ?? "";
    const name = byExpr.get(expr);
    if (req.method !== "POST" || req.url !== "/api/v1/query" || name === undefined) {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ status: "error", error: `unexpected query ${expr}` }));
      return;
    }
    fake.asked.push(name);
    inFlight++;
    fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
    const answer = () => {
      inFlight--;
      const result = (results[name] ?? []).map((s) => ({ metric: s.metric, value: [1_700_000_000, String(s.value)] }));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ status: "success", data: { resultType: "vector", result } }));
    };
    if (options.holdFor === undefined) return answer();
    held.push(answer);
    if (inFlight >= options.holdFor) release();
    else setTimeout(release, 2000).unref();
  });
  servers.push(fake.server);
  await new Promise<void>((r) => fake.server.listen(0, "127.0.0.1", r));
  const address = fake.server.address();
  if (address === null || typeof address !== "object") throw new Error("no address");
  fake.url = `http://127.0.0.1:${address.port}`;
  return fake;
}

/** One `group by (job, instance, deployment_version, worker_id)` sample. */
const w = (instance: string, version: string, id: string, job = "openrtc") => ({ metric: { job, instance, deployment_version: version, worker_id: id }, value: 1 });
const t = (instance: string, job = "openrtc") => ({ job, instance });
const byKey = (readings: WorkerReading[]) => new Map(readings.map((r) => [r.key, r]));

describe("prometheusSource", () => {
  it("sends every fleet query in one round: all are in flight before the first is answered", async () => {
    const names = Object.keys(fleetQueries("15m"));
    const fake = await fakePrometheus({}, { holdFor: names.length });
    const started = Date.now();
    await prometheusSource({ url: fake.url, sessions: false }).read();
    expect(fake.maxInFlight).toBe(names.length);
    expect([...fake.asked].sort()).toEqual([...names].sort());
    // Released by the last arrival, not by the 2 s fallback timer.
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("turns sparse answers into readings: present (draining, stuck, rejected), gone, replaced, unreachable", async () => {
    const fake = await fakePrometheus({
      seen: [w("a:1", "v1", "wa"), w("b:1", "v1", "wb"), w("c:1", "v1", "wc-old"), w("c:1", "v2", "wc-new"), w("d:1", "v2", "wd")],
      present: [w("a:1", "v1", "wa"), w("c:1", "v2", "wc-new"), w("d:1", "v2", "wd")],
      // The rule answers for every present worker, 0 included.
      active: [
        { metric: t("a:1"), value: 2 },
        { metric: t("c:1"), value: 0 },
        { metric: t("d:1"), value: 1 },
      ],
      lastActive: [{ metric: t("b:1"), value: 3 }],
      draining: [{ metric: t("a:1"), value: 1 }],
      stuck: [{ metric: t("a:1"), value: 1 }],
      rejected: [{ metric: t("a:1"), value: 4 }],
      dropped: [{ metric: t("b:1"), value: 1 }],
      // e:1 never was a worker: unreachable. b:1 was (it is gone, above). n:1 is another job's target.
      down: [{ metric: t("e:1"), value: 0 }, { metric: t("b:1"), value: 0 }, { metric: t("n:1", "node"), value: 0 }],
    });
    const readings = await prometheusSource({ url: fake.url, sessions: false }).read();
    const r = byKey(readings);
    expect(readings).toHaveLength(6);
    expect(r.get("openrtc/a:1")).toMatchObject({ kind: "present", workerId: "wa", version: "v1", state: "draining", draining: true, activeSessions: 2, rejectedJobs: 4, drainStuck: true, droppedSessions: 0 });
    expect(r.get("openrtc/b:1")).toMatchObject({ kind: "gone", workerId: "wb", activeSessions: 3, droppedSessions: 1 });
    expect(r.get("openrtc/c:1#wc-old")).toMatchObject({ kind: "gone", workerId: "wc-old", activeSessions: 0 });
    expect(r.get("openrtc/c:1")).toMatchObject({ kind: "present", workerId: "wc-new", version: "v2", state: "serving", draining: false, activeSessions: 0, rejectedJobs: 0, drainStuck: false });
    expect(r.get("openrtc/d:1")).toMatchObject({ kind: "present", state: "serving", activeSessions: 1, rejectedJobs: 0, droppedSessions: 0 });
    expect(r.get("openrtc/e:1")).toMatchObject({ kind: "unreachable", url: "http://e:1" });
    expect(r.has("node/n:1")).toBe(false);
    // The rule answered: no second round.
    expect(fake.asked).not.toContain("activeRaw");
  });

  it("a draining worker with no calls left is drained", async () => {
    const fake = await fakePrometheus({ seen: [w("a:1", "v1", "wa")], present: [w("a:1", "v1", "wa")], active: [{ metric: t("a:1"), value: 0 }], draining: [{ metric: t("a:1"), value: 1 }] });
    const [reading] = await prometheusSource({ url: fake.url, sessions: false }).read();
    expect(reading).toMatchObject({ kind: "present", state: "drained", draining: true, activeSessions: 0 });
  });

  it("without the recording rule's series, reads live calls from the raw series in a second round", async () => {
    const fake = await fakePrometheus({
      seen: [w("a:1", "v1", "wa"), w("d:1", "v2", "wd")],
      present: [w("a:1", "v1", "wa"), w("d:1", "v2", "wd")],
      activeRaw: [{ metric: t("a:1"), value: 5 }],
    });
    const r = byKey(await prometheusSource({ url: fake.url, sessions: false }).read());
    expect(r.get("openrtc/a:1")).toMatchObject({ activeSessions: 5, state: "serving" });
    expect(r.get("openrtc/d:1")).toMatchObject({ activeSessions: 0 });
    expect(fake.asked.indexOf("activeRaw")).toBe(Object.keys(fleetQueries("15m")).length);
  });

  it("no second round when no worker is present", async () => {
    const fake = await fakePrometheus({ seen: [w("b:1", "v1", "wb")], lastActive: [{ metric: t("b:1"), value: 1 }] });
    const readings = await prometheusSource({ url: fake.url, sessions: false }).read();
    expect(readings).toEqual([expect.objectContaining({ key: "openrtc/b:1", kind: "gone", activeSessions: 1 })]);
    expect(fake.asked).not.toContain("activeRaw");
  });

  it("--job narrows every query, the fallback included", async () => {
    for (const expr of Object.values({ ...fleetQueries("5m", "voice"), ...fleetFallbackQueries("voice") })) {
      const selectors = expr.match(/\b(?:openrtc_[a-z_]+|openrtc:[a-z_:]+|up)\b(\{[^}]*\})?/g) ?? [];
      expect(selectors.length).toBeGreaterThan(0);
      for (const s of selectors) expect(s).toContain('{job="voice"}');
    }
    const fake = await fakePrometheus({ seen: [w("a:1", "v1", "wa", "voice")], present: [w("a:1", "v1", "wa", "voice")], active: [{ metric: t("a:1", "voice"), value: 1 }] }, { job: "voice", window: "5m" });
    const readings = await prometheusSource({ url: fake.url, job: "voice", window: "5m", sessions: false }).read();
    expect(readings).toEqual([expect.objectContaining({ key: "voice/a:1", activeSessions: 1 })]);
  });
});
