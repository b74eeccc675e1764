// Two real AgentServer workers ("blue" and "green"), four calls, a drain of blue while it
// holds calls, and the outside view of every call's fate.
// Run: pnpm --filter @openrtc/livekit-dispatcher example
import { setTimeout as sleep } from "node:timers/promises";
import { spawnWorker, startDispatcher } from "../src/index.ts";

const apiKey = "devkey";
const apiSecret = "devsecret-at-least-32-characters-long";

const d = await startDispatcher({ apiKey, apiSecret, profile: "legacy" });
d.events.on("job_assigned", (j) => console.log(`${j.id} → ${j.workerId} (${j.workerDeployment})`));
d.events.on("job_ended", (j) => console.log(`${j.id} ended: ${j.fate} (${j.endReason})`));

const env = { LIVEKIT_URL: d.url, LIVEKIT_API_KEY: apiKey, LIVEKIT_API_SECRET: apiSecret };
const blue = spawnWorker({ env: { ...env, LIVEKIT_AGENT_DEPLOYMENT: "blue" } });
const green = spawnWorker({ env: { ...env, LIVEKIT_AGENT_DEPLOYMENT: "green" } });
const [blueId] = await Promise.all([blue.registered, green.registered]);

// The hold-call agent holds each call for metadata.duration_ms, then hangs up (deletes its room).
const call = (ms: number) => d.dispatch({ metadata: JSON.stringify({ tenant: "acme", duration_ms: ms }) });
const calls = [call(6000), call(6000), call(1000)];
await Promise.all(calls.map((c) => c.placed));
// Job processes take 1.5–4 s to start after assignment here; draining before they run drops
// the calls in @livekit/agents 1.9 (see README, "Findings").
await sleep(5000);

// Drain blue: it reports WS_FULL at once, is skipped, and its calls run to hang-up.
blue.send({ type: "drain" });
await d.waitForWorkers(1, { filter: (w) => w.id === blueId && w.status === "full" });
const late = call(500);
console.log(`late call went to ${(await late.placed).workerDeployment}`);
await blue.nextMessage("drained");
blue.kill("SIGTERM");
await blue.exited;

await Promise.all([...calls, late].map((c) => c.ended));
console.log(JSON.stringify(d.summary().byDeployment));

green.kill("SIGTERM");
await green.exited;
await d.close();
