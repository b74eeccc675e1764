// Bench helper for the `fleet-prometheus` section: the contract metrics of WORKERS workers served
// from EXPORTERS /metrics endpoints (WORKERS / EXPORTERS workers each), for a real Prometheus to
// scrape with `honor_labels: true`. Each worker's samples are the exact text a real AgentPool of
// its shape exposes (scraped from one real pool per shape at start-up), with the `instance` label a
// per-worker scrape target would get added to every sample and its own `worker_id`, so every query
// that groups or joins `by (job, instance)` sees 10,000 distinct workers.
//
// v1 (the first half): all draining, one job rejected each; every 10th holds 1-3 calls, the rest
// drained to 0. v2 (the second half): serving, 0-4 calls (i % 5). Every worker ended 2 calls
// before (so the per-tenant and histogram series exist, as on any worker that has served).
// The v1 workers holding calls are also real pools behind real control servers on their own
// loopback address (127.x.y.z), which is their `instance`: `fleet status` reads their calls' ages
// from GET /sessions, as it does on a real fleet.
//
// Prints one JSON line ({ targets, expected }), then stays up until stdin closes.
import { createServer, type Server } from "node:http";
import { createControlServer } from "../src/control-server.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool } from "../src/pool.ts";

const WORKERS = Number(process.argv[2] ?? 10_000);
const EXPORTERS = Number(process.argv[3] ?? 10);
const WID = "__worker_id__";

interface Shape {
  version: "v1" | "v2";
  draining: boolean;
  calls: number;
}

function shapeOf(i: number): Shape {
  if (i < WORKERS / 2) return { version: "v1", draining: true, calls: i % 10 === 0 ? 1 + ((i / 10) % 3) : 0 };
  return { version: "v2", draining: false, calls: i % 5 };
}

const shapeKey = (s: Shape) => `${s.version}/${s.draining ? "d" : "s"}/${s.calls}`;
/** A worker's address: its own loopback IP (127.10.0.1 …), so every worker is its own instance. */
const hostOf = (i: number) => `127.${10 + Math.floor(i / 250)}.0.${(i % 250) + 1}`;

/** A real pool in the given shape: 2 calls served and ended, `calls` live, drained if asked. */
function makePool(shape: Shape, workerId: string): AgentPool {
  const pool = new AgentPool({ deploymentVersion: shape.version, workerId, logger: silentLogger });
  pool.markReady();
  for (let j = 0; j < 2; j++) pool.startSession({ jobId: `${workerId}-done-${j}`, agentName: "support", metadata: { tenant: `t${j}` } }).end({ status: "success" });
  for (let j = 0; j < shape.calls; j++) pool.startSession({ jobId: `${workerId}-${j}`, agentName: "support", metadata: { tenant: `t${j % 3}` } });
  if (shape.draining) {
    pool.beginDrain({ actor: "bench" });
    try {
      pool.startSession({ jobId: `${workerId}-late`, agentName: "support", metadata: { tenant: "t0" } });
    } catch {
      // rejected while draining: counted in openrtc_jobs_rejected_total
    }
  }
  return pool;
}

interface Family {
  name: string;
  header: string[];
  samples: string[];
}

/** The exposition split into metric families (HELP/TYPE once each, then the samples). */
function families(text: string): Family[] {
  const out: Family[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const help = /^# HELP (\S+)/.exec(line);
    if (help !== null) {
      out.push({ name: help[1] as string, header: [line], samples: [] });
      continue;
    }
    const fam = out.at(-1);
    if (fam === undefined) throw new Error(`sample before any # HELP: ${line}`);
    if (line.startsWith("#")) fam.header.push(line);
    else fam.samples.push(line);
  }
  return out;
}

/** One sample line with `instance` added to its labels and `worker_id` filled in. */
function relabel(line: string, instance: string, workerId: string): string {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (.*)$/.exec(line);
  if (m === null) throw new Error(`not a sample line: ${line}`);
  const labels = m[2] === undefined || m[2] === "" ? "" : `,${m[2].replace(`worker_id="${WID}"`, `worker_id="${workerId}"`)}`;
  return `${m[1]}{instance="${instance}"${labels}} ${m[3]}\n`;
}

const templates = new Map<string, Family[]>();
for (let i = 0; i < WORKERS; i++) {
  const shape = shapeOf(i);
  const key = shapeKey(shape);
  if (templates.has(key)) continue;
  const pool = makePool(shape, WID);
  templates.set(key, families(await pool.metrics.scrape()));
  await pool.close({ dropLiveSessions: true });
}
// Every shape's registry has the same families in the same order; HELP/TYPE are written once.
const headers = ([...templates.values()][0] ?? []).map((f) => f.header.join("\n"));
const order = ([...templates.values()][0] ?? []).map((f) => f.name);
for (const t of templates.values()) {
  if (t.map((f) => f.name).join() !== order.join()) throw new Error("shapes expose different metric families");
}

// The v1 workers holding calls: real pools behind real control servers at their own address.
const instances: string[] = [];
const closers: Array<() => Promise<void>> = [];
for (let i = 0; i < WORKERS; i++) {
  const shape = shapeOf(i);
  if (shape.draining && shape.calls > 0) {
    const pool = makePool(shape, `w-${i}`);
    const server = await createControlServer(pool, { host: hostOf(i) });
    instances.push(new URL(server.url).host);
    closers.push(async () => {
      await server.close();
      await pool.close({ dropLiveSessions: true });
    });
  } else {
    instances.push(`${hostOf(i)}:8081`);
  }
}

function exposition(from: number, to: number): Buffer {
  const parts: string[] = [];
  for (let f = 0; f < order.length; f++) {
    parts.push(`${headers[f]}\n`);
    for (let i = from; i < to; i++) {
      const fam = (templates.get(shapeKey(shapeOf(i))) as Family[])[f] as Family;
      for (const line of fam.samples) parts.push(relabel(line, instances[i] as string, `w-${i}`));
    }
  }
  return Buffer.from(parts.join(""));
}

const per = Math.ceil(WORKERS / EXPORTERS);
const servers: Server[] = [];
const targets: string[] = [];
let bytes = 0;
let samples = 0;
for (let e = 0; e < EXPORTERS; e++) {
  const body = exposition(e * per, Math.min(WORKERS, (e + 1) * per));
  bytes += body.length;
  samples += body.toString("utf8").split("\n").filter((l) => l !== "" && !l.startsWith("#")).length;
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8", "content-length": body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  if (address === null || typeof address !== "object") throw new Error("no address");
  servers.push(server);
  targets.push(`127.0.0.1:${address.port}`);
}

const expected = { v1: { workers: 0, draining: 0, calls: 0, withCalls: 0, rejected: 0 }, v2: { workers: 0, serving: 0, calls: 0 } };
for (let i = 0; i < WORKERS; i++) {
  const s = shapeOf(i);
  if (s.version === "v1") {
    expected.v1.workers++;
    expected.v1.draining++;
    expected.v1.calls += s.calls;
    expected.v1.rejected++;
    if (s.calls > 0) expected.v1.withCalls++;
  } else {
    expected.v2.workers++;
    expected.v2.serving++;
    expected.v2.calls += s.calls;
  }
}

process.stdout.write(`${JSON.stringify({ targets, expected, bytes, samples })}\n`);
process.stdin.resume();
process.stdin.on("end", async () => {
  for (const s of servers) s.close();
  await Promise.all(closers.map((c) => c()));
  process.exit(0);
});
