// End to end: a real @livekit/agents AgentServer started through runApp, attachKubernetes on the
// same pool, the local LiveKit-protocol dispatcher, a live call, and a real SIGTERM.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { markerDirPresence, startDispatcher, waitForEvent, type Dispatcher } from "@openrtc/livekit-dispatcher";
import { startChild, type Child } from "../../core/test/child.ts";
import { writePodInfo } from "../src/testing/kubelet.ts";
import { TOKEN, until } from "../src/testing/helpers.ts";

const fixture = fileURLToPath(new URL("./fixtures/runapp-k8s-worker.ts", import.meta.url));
const apiKey = "k8s-key";
const apiSecret = "k8s-secret-k8s-secret-k8s-secret-000";
const dir = mkdtempSync(join(tmpdir(), "openrtc-k8s-runapp-"));
let d: Dispatcher;
let c: Child | undefined;

beforeAll(async () => {
  d = await startDispatcher({ apiKey, apiSecret, profile: "livekit", seed: 3, agentPresence: markerDirPresence(dir) });
});
afterAll(async () => {
  c?.child.kill("SIGKILL");
  await c?.exited;
  await d?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function sigtermWithLiveCall(server: "runApp" | "hand"): Promise<void> {
  const podinfo = join(dir, `podinfo-${server}`);
  writePodInfo(podinfo, { name: "voice-worker-v2-abc", namespace: "voice", labels: { "app.kubernetes.io/version": "v2.0.0" }, annotations: {} });
  const auditFile = join(dir, `audit-${server}.jsonl`);
  c = startChild(fixture, ["start"], {
    ...process.env,
    LIVEKIT_URL: d.url,
    LIVEKIT_API_KEY: apiKey,
    LIVEKIT_API_SECRET: apiSecret,
    LIVEKIT_AGENT_DEPLOYMENT: "",
    OPENRTC_DRAIN_TOKEN: TOKEN,
    FIXTURE_PODINFO: podinfo,
    FIXTURE_AUDIT_FILE: auditFile,
    HOLD_CALL_MARKER_DIR: dir,
    LOG_LEVEL: "warn",
    FIXTURE_SERVER: server,
  });
  const url = (await c.waitFor("CONTROL ")).slice("CONTROL ".length);
  expect((await fetch(`${url}/readyz`)).status).toBe(503); // not registered yet
  const id = (await c.waitFor("REGISTERED ")).slice("REGISTERED ".length);
  await until(async () => (await fetch(`${url}/readyz`)).status === 200, "ready after registration");
  expect(await (await fetch(`${url}/snapshot`)).json()).toMatchObject({ deployment_version: "v2.0.0", worker_id: id });

  const h = d.dispatch({ metadata: JSON.stringify({ tenant: "acme" }), caller: true });
  expect((await h.placed).workerId).toBe(id);
  await until(() => existsSync(join(dir, `${h.id}.started`)), "the agent's entry running", 60_000);
  const full = waitForEvent(d.events, "worker_status", (v) => v.id === id && v.status === "full");
  c.child.kill("SIGTERM");
  await full;
  expect((await fetch(`${url}/readyz`)).status).toBe(503);
  expect((await fetch(`${url}/livez`)).status).toBe(200);
  expect((await fetch(`${url}/livez`, { method: "HEAD" })).status).toBe(200);
  const late = await d.dispatch({ metadata: JSON.stringify({ tenant: "acme" }), caller: true }).ended;
  expect(late.workerId).toBeUndefined();
  expect(c.child.exitCode).toBeNull();
  d.hangUp(h.id);
  expect(await h.ended).toMatchObject({ fate: "completed", workerId: id });
  expect(await c.exited).toEqual({ code: 0, signal: null });
  const events = readFileSync(auditFile, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(["deployment.drain_started", "deployment.drain_completed", "worker.exited"]));
  expect(events.find((e) => e.event === "worker.exited")).toMatchObject({ dropped_sessions: 0, version: "v2.0.0" });
}

test("runApp: SIGTERM with a live call: readiness 503, liveness 200, no new job taken, exit 0 only after the caller hangs up", () => sigtermWithLiveCall("runApp"), 120_000);

test("a hand-built AgentServer (createAgentServer) on a plain pool: the version from the pod label, the same drain", () => sigtermWithLiveCall("hand"), 120_000);
