// The bench's worker process: a pool with attachKubernetes on loopback, and session churn on
// command ("churn N MS": N sessions start over MS milliseconds, each ending 0.5-1.5 s later).
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { AgentPool, silentLogger } from "@openrtc/core";
import { attachKubernetes } from "@openrtc/adapter-k8s";

const pool = new AgentPool({ deploymentVersion: "v1.0.0", logger: silentLogger });
if (process.argv[2] === "baseline") {
  // The floor on this machine at this moment: a bare node:http server answering 200 with a body.
  const server = createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.setHeader("content-length", 17);
    res.end('{"status":"ok"}\n\n');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  process.stdout.write(`CONTROL http://127.0.0.1:${(server.address() as { port: number }).port}\n`);
} else {
  const k8s = await attachKubernetes(pool, { host: "127.0.0.1", port: 0, drainToken: "bench-token-0123456789abcdef" });
  pool.markReady();
  process.stdout.write(`CONTROL ${k8s.url}\n`);
}

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, n, ms] = line.split(" ");
  if (cmd !== "churn") continue;
  const total = Number(n);
  const spanMs = Number(ms);
  let started = 0;
  let ended = 0;
  const t0 = performance.now();
  const tick = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / spanMs) * total) + 1);
    while (started < due) {
      const s = pool.startSession({ jobId: `job-${started}`, metadata: { tenant: `t${started % 20}` } });
      started++;
      setTimeout(() => {
        s.end({ status: "success" });
        if (++ended === total) process.stdout.write(`CHURNED ${started} ${ended}\n`);
      }, 500 + Math.random() * 1000);
    }
    if (started >= total) clearInterval(tick);
  }, 5);
}
