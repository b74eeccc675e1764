/**
 * `pnpm bench` in packages/adapter-k8s: probe latency on loopback under an open-loop load of
 * 1,000 requests/s (/readyz and /livez, GET and HEAD, keep-alive as the kubelet uses) against a
 * worker process (bench/worker.ts) in which 1,000 sessions start and end meanwhile. Goal: p99 ≤ 5 ms.
 * Timing lives here, never in pass/fail tests. `pnpm bench -- --seconds 10 --rate 1000`.
 */
import { spawn } from "node:child_process";
import { Agent, request } from "node:http";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "10" }, rate: { type: "string", default: "1000" }, sessions: { type: "string", default: "1000" } }, allowPositionals: true });
const seconds = Number(values.seconds);
const rate = Number(values.rate);
const sessions = Number(values.sessions);

async function run(mode: "adapter" | "baseline") {
const worker = spawn(process.execPath, ["--conditions=@openrtc/source", "--import", "tsx", fileURLToPath(new URL("./worker.ts", import.meta.url)), mode], { stdio: ["pipe", "pipe", "inherit"] });
const lines = createInterface({ input: worker.stdout });
const waitLine = (prefix: string) => new Promise<string>((resolve) => lines.on("line", (l) => l.startsWith(prefix) && resolve(l)));
const url = new URL((await waitLine("CONTROL ")).slice(8));

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const paths: [string, string][] = [["GET", "/readyz"], ["HEAD", "/readyz"], ["GET", "/livez"], ["HEAD", "/livez"]];
function probe(i: number): Promise<number> {
  const [method, path] = paths[i % paths.length]!;
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method, agent }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`${path} ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end();
  });
}

// Warm up (JIT, sockets) before measuring.
for (let i = 0; i < 500; i++) await probe(i);

const churned = waitLine("CHURNED ");
worker.stdin.write(`churn ${sessions} ${Math.floor(seconds * 1000 * 0.8)}\n`);
const latencies: number[] = [];
const pending: Promise<void>[] = [];
let errors = 0;
let sent = 0;
const total = Math.round(seconds * rate);
const start = performance.now();
// Open loop: requests go out on schedule whether or not earlier ones have answered.
await new Promise<void>((resolve) => {
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    while (sent < due) pending.push(probe(sent++).then((ms) => void latencies.push(ms), () => void errors++));
    if (sent >= total) resolve();
    else setTimeout(tick, 1);
  };
  tick();
});
await Promise.all(pending);
const elapsed = (performance.now() - start) / 1000;
const churn = await churned;
worker.kill("SIGTERM");
agent.destroy();

latencies.sort((a, b) => a - b);
return { latencies, elapsed, errors, churn };
}

const adapter = await run("adapter");
// The same load against a bare node:http server, so a loaded machine (others' tests on 2 cores)
// shows as a high baseline rather than as the adapter's cost.
const baseline = await run("baseline");
const { latencies, elapsed, errors, churn } = adapter;
const bq = (p: number) => baseline.latencies[Math.min(baseline.latencies.length - 1, Math.floor(p * baseline.latencies.length))]!;
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
const rows = [
  ["requests", String(latencies.length), `${(latencies.length / elapsed).toFixed(0)} req/s achieved, ${errors} errors`],
  ["p50", `${q(0.5).toFixed(3)} ms`, ""],
  ["p99", `${q(0.99).toFixed(3)} ms`, `goal ≤ 5 ms: ${q(0.99) <= 5 ? "met" : "NOT met"}`],
  ["p99.9", `${q(0.999).toFixed(3)} ms`, ""],
  ["max", `${latencies.at(-1)!.toFixed(3)} ms`, ""],
  ["baseline", `p50 ${bq(0.5).toFixed(3)} ms, p99 ${bq(0.99).toFixed(3)} ms`, "bare node:http server, same load, same machine, right after"],
  ["sessions", churn.slice(8).replace(" ", " started, ") + " ended", "in the worker during the load"],
];
console.log(`probe latency on loopback, ${rate} req/s open loop for ${seconds} s (/readyz, /livez; GET and HEAD; keep-alive)`);
for (const [a, b, c] of rows) console.log(`  ${a!.padEnd(9)} ${b!.padEnd(14)} ${c}`);
process.exit(errors === 0 ? 0 : 1);
