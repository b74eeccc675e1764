// Bench helper: N real workers (AgentPool + control server) in one process. Prints their URLs as
// one JSON line, then stays up until stdin closes. Every 4th worker is a draining v1 with calls.
import { createControlServer } from "../src/control-server.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool } from "../src/pool.ts";

const count = Number(process.argv[2] ?? 1000);
const offset = Number(process.argv[3] ?? 0);
const urls: string[] = [];
for (let i = offset; i < offset + count; i++) {
  const old = i % 4 === 0;
  const pool = new AgentPool({ deploymentVersion: old ? "v1.0.0" : "v2.0.0", workerId: `bench-${i}`, logger: silentLogger });
  const server = await createControlServer(pool);
  pool.markReady();
  for (let j = 0; j < 3; j++) pool.startSession({ jobId: `w${i}-j${j}`, agentName: "support", metadata: { tenant: `t${(i + j) % 50}` } });
  if (old) pool.beginDrain({ actor: "bench" });
  urls.push(server.url);
}
process.stdout.write(`${JSON.stringify(urls)}\n`);
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
