// A real worker process (test/fixtures/k8s-worker.ts) with attachKubernetes, real signals, real
// HTTP, and the real preStop command (src/prestop.ts) run as its own process.
import { Agent, request } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { startChild, type Child } from "../../core/test/child.ts";
import { writePodInfo, writeProjectedVolume } from "../src/testing/kubelet.ts";
import { manifestJson, SECRET, TOKEN, until, useTempDir } from "../src/testing/helpers.ts";

const fixture = fileURLToPath(new URL("./fixtures/k8s-worker.ts", import.meta.url));
const prestop = fileURLToPath(new URL("../src/prestop.ts", import.meta.url));
const tempDir = useTempDir();
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) c.child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
});

interface Worker extends Child {
  url: string;
  send(command: string): void;
  audit(): Record<string, unknown>[];
}

async function startWorker(env: Record<string, string> = {}): Promise<Worker> {
  const c = startChild(fixture, [], { ...process.env, OPENRTC_DRAIN_TOKEN: TOKEN, FIXTURE_VERSION: "v1.0.0", ...env });
  children.push(c);
  const url = (await c.waitFor("CONTROL ")).slice("CONTROL ".length);
  const w: Worker = {
    ...c,
    url,
    send: (command) => c.child.stdin.write(`${command}\n`),
    audit: () => c.lines.filter((l) => l.startsWith("AUDIT ")).map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>),
  };
  w.send("ready");
  await c.waitFor("READY");
  return w;
}

const status = async (url: string) => (await fetch(url)).status;

/** GET on a kept-alive socket (as the kubelet probes), so a reading is one round trip, no connect. */
function probe(agent: Agent, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}
const snapshot = async (w: Worker) => (await (await fetch(`${w.url}/snapshot`)).json()) as Record<string, unknown>;

describe("a real worker process on SIGTERM", () => {
  test("two live calls: readiness 503 at once, liveness 200; the first hang-up does not exit, the second does; a second SIGTERM changes nothing", async () => {
    const w = await startWorker({ POD_NAME: "worker-v1-7c9", POD_NAMESPACE: "voice" });
    expect(await status(`${w.url}/readyz`)).toBe(200);
    w.send("start a");
    w.send("start b");
    await w.waitFor("STARTED b");
    w.child.kill("SIGTERM");
    await until(async () => (await status(`${w.url}/readyz`)) === 503, "readyz 503");
    expect(await status(`${w.url}/livez`)).toBe(200);
    const head = await fetch(`${w.url}/readyz`, { method: "HEAD" });
    expect(head.status).toBe(503);
    expect(head.headers.get("connection")).toBe("close");
    w.send("start c");
    expect(await w.waitFor("REJECTED c")).toContain("draining");
    w.send("end a");
    await w.waitFor("ENDED a");
    w.child.kill("SIGTERM");
    expect(await snapshot(w)).toMatchObject({ draining: true, active_sessions: 1, state: "draining" });
    expect(w.child.exitCode).toBeNull();
    expect(await status(`${w.url}/livez`)).toBe(200);
    w.send("end b");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(w.audit().map((r) => r.event)).toEqual(["deployment.drain_started", "worker.rejected", "deployment.drain_completed", "worker.exited"]);
    // The kubelet's SIGTERM is recorded as Kubernetes retiring the pod, with the pod's identity.
    expect(w.audit()[0]).toMatchObject({ actor: "kubernetes", signal: "SIGTERM", active_sessions: 2 });
    expect(w.audit()[0]).toMatchObject({ pod_name: "worker-v1-7c9", pod_namespace: "voice" });
  });

  test("readiness is 503 within 10 ms of SIGTERM while liveness stays 200 (the flip happens in the signal's own handler)", async () => {
    const w = await startWorker();
    w.send("start held");
    await w.waitFor("STARTED held");
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 20; i++) expect(await probe(agent, `${w.url}/readyz`)).toBe(200); // warm: JIT, socket
      const t0 = process.hrtime.bigint();
      w.child.kill("SIGTERM");
      // Deterministic: ready before the pool's handler, not ready right after it — no event-loop
      // turn, no timer, between the signal and readiness failing.
      const first = await w.waitFor("SIGTERM_FIRST ");
      const after = await w.waitFor("SIGTERM_AFTER ");
      expect(first).toMatch(/ready=true$/);
      expect(after).toMatch(/ready=false$/);
      // And seen from outside: the very next probe is 503, liveness stays 200.
      expect(await probe(agent, `${w.url}/readyz`)).toBe(503);
      const t503 = process.hrtime.bigint();
      expect(await status(`${w.url}/livez`)).toBe(200);
      // The wall-clock figures depend on the machine (the bench measures them against the 10 ms
      // goal): printed, not asserted.
      const ns = (line: string) => BigInt(line.split(" ")[1]!);
      const ms = (from: bigint, to: bigint) => (Number(to - from) / 1e6).toFixed(2);
      console.log(`SIGTERM → handler ${ms(t0, ns(first))} ms, handler → not ready ${ms(ns(first), ns(after))} ms, SIGTERM → a 503 answered ${ms(t0, t503)} ms`);
    } finally {
      agent.destroy();
    }
    w.send("end held");
    expect(await w.exited).toEqual({ code: 0, signal: null });
  });

  test("the mounted manifest ConfigMap, swapped by the kubelet (..data flip): leaving it fails readiness (membership) and refuses jobs; back in, ready again", async () => {
    const dir = tempDir();
    writeProjectedVolume(dir, { "manifest.json": manifestJson(1, ["v1.0.0", "v2.0.0"]) });
    const w = await startWorker({ FIXTURE_MANIFEST: path.join(dir, "manifest.json"), OPENRTC_MANIFEST_SECRETS: `old-secret-0123456789abcdef,${SECRET}` });
    expect(await status(`${w.url}/readyz`)).toBe(200);
    w.send("start live");
    await w.waitFor("STARTED live");
    writeProjectedVolume(dir, { "manifest.json": manifestJson(2, ["v2.0.0"]) });
    await until(async () => (await status(`${w.url}/readyz`)) === 503, "readyz 503 after the ConfigMap swap");
    expect(await (await fetch(`${w.url}/readyz`)).json()).toMatchObject({ reject_reason: "membership" });
    expect(await status(`${w.url}/livez`)).toBe(200);
    w.send("start late");
    expect(await w.waitFor("REJECTED late")).toMatch(/not in the active manifest/);
    expect(await until(() => w.audit().find((r) => r.event === "worker.rejected"), "worker.rejected")).toMatchObject({ reason: "membership" });
    writeProjectedVolume(dir, { "manifest.json": manifestJson(3, ["v1.0.0"]) });
    await until(async () => (await status(`${w.url}/readyz`)) === 200, "readyz 200 once v1 is back in the manifest");
    w.send("end live");
    await w.waitFor("ENDED live");
    w.child.kill("SIGTERM");
    expect(await w.exited).toEqual({ code: 0, signal: null });
  });

  test("a drain past drainTimeout is reported (snapshot, metric, audit, a log line with the stuck calls' ages) and nothing is killed", async () => {
    const w = await startWorker({ FIXTURE_DRAIN_TIMEOUT_MS: "300", POD_NAME: "worker-v1-stuck", POD_NAMESPACE: "voice" });
    w.send("start long-call");
    await w.waitFor("STARTED long-call");
    w.child.kill("SIGTERM");
    await until(async () => (await snapshot(w)).drain_stuck === true, "snapshot drain_stuck");
    expect(await (await fetch(`${w.url}/metrics`)).text()).toMatch(/^openrtc_drain_stuck(\{[^}]*\})? 1$/m);
    const stuck = await until(() => w.audit().find((r) => r.event === "deployment.drain_stuck"), "deployment.drain_stuck");
    expect(stuck).toMatchObject({ active_sessions: 1, sessions: [expect.objectContaining({ job_id: "long-call", age_seconds: expect.any(Number) })] });
    await until(() => /drain outlived drainTimeoutMs with 1 live call\(s\) \(ages \d+s\)/.test(w.stderr()), "the drain-timeout log line");
    expect(w.stderr()).toContain("worker-v1-stuck");
    // Never force-killed by us: well past the timeout the call is still live and the pod still answers.
    await new Promise((r) => setTimeout(r, 1000));
    expect(w.child.exitCode).toBeNull();
    expect(await snapshot(w)).toMatchObject({ active_sessions: 1, draining: true });
    expect(await status(`${w.url}/livez`)).toBe(200);
    w.send("end long-call");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(w.audit().find((r) => r.event === "worker.exited")).toMatchObject({ dropped_sessions: 0 });
  });

  test("preStop: openrtc-prestop blocks until drained (actor kubernetes, pod name and namespace); the SIGTERM after it finds nothing live", async () => {
    const w = await startWorker({ POD_NAME: "worker-v1-5f6", POD_NAMESPACE: "voice" });
    w.send("start call");
    await w.waitFor("STARTED call");
    const hook = startChild(prestop, [], { ...process.env, OPENRTC_DRAIN_TOKEN: TOKEN, OPENRTC_PRESTOP_URL: w.url });
    children.push(hook);
    await until(async () => (await status(`${w.url}/readyz`)) === 503, "readyz 503 after preStop");
    expect(hook.child.exitCode).toBeNull();
    w.send("end call");
    expect(await hook.exited).toEqual({ code: 0, signal: null });
    expect(await hook.waitFor("openrtc-prestop: drained")).toContain('"active_sessions":0');
    w.child.kill("SIGTERM");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    const started = w.audit().find((r) => r.event === "deployment.drain_started");
    expect(started).toMatchObject({ actor: "kubernetes", reason: "preStop hook", auth: "token", pod_name: "worker-v1-5f6", pod_namespace: "voice" });
    expect(w.audit().filter((r) => r.event === "deployment.drain_started")).toHaveLength(1);
  });

  test("preStop with a wrong token fails (exit 1) and drains nothing; with no worker listening it has nothing to do (exit 0)", async () => {
    const w = await startWorker();
    const bad = startChild(prestop, [], { ...process.env, OPENRTC_DRAIN_TOKEN: "wrong-token-wrong-token", OPENRTC_PRESTOP_URL: w.url });
    children.push(bad);
    expect((await bad.exited).code).toBe(1);
    expect(bad.stderr()).toMatch(/403/);
    expect(await status(`${w.url}/readyz`)).toBe(200);
    w.child.kill("SIGTERM");
    await w.exited;
    const none = startChild(prestop, [], { ...process.env, OPENRTC_PRESTOP_URL: w.url });
    children.push(none);
    expect((await none.exited).code).toBe(0);
    expect(await none.waitFor("openrtc-prestop: no control server")).toBeTruthy();
  });

  test("shutdownDelayMs: after the last call the pool closes, liveness stays 200 through the delay, then exit 0", async () => {
    const w = await startWorker({ FIXTURE_SHUTDOWN_DELAY_MS: "3000" });
    w.send("start x");
    await w.waitFor("STARTED x");
    w.child.kill("SIGTERM");
    w.send("end x");
    await w.waitFor("DRAINED");
    await until(async () => ((await snapshot(w)).state === "closed" ? true : false), "pool closed");
    expect(await status(`${w.url}/livez`)).toBe(200);
    expect(w.child.exitCode).toBeNull();
    expect(await w.exited).toEqual({ code: 0, signal: null });
  });

  test("the drain annotation via the kubelet's symlink swap drains the real process; it exits once the call ends", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "worker-v1-x", namespace: "voice", labels: { "app.kubernetes.io/version": "v1.0.0" }, annotations: {} });
    const w = await startWorker({ FIXTURE_PODINFO: dir, FIXTURE_VERSION: "" });
    expect(await snapshot(w)).toMatchObject({ deployment_version: "v1.0.0" });
    w.send("start live");
    await w.waitFor("STARTED live");
    writePodInfo(dir, { name: "worker-v1-x", namespace: "voice", labels: { "app.kubernetes.io/version": "v1.0.0" }, annotations: { "openrtc.io/drain": "true" } });
    await until(async () => (await status(`${w.url}/readyz`)) === 503, "readyz 503 after annotate");
    expect(await status(`${w.url}/livez`)).toBe(200);
    w.send("end live");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(w.audit().find((r) => r.event === "deployment.drain_started")).toMatchObject({ actor: "kubernetes", trigger: "annotation", pod_name: "worker-v1-x", pod_namespace: "voice" });
  });

  test("an AgentServer health server on the control port dies with a message that says what to change", async () => {
    const c = startChild(fixture, [], { ...process.env, OPENRTC_DRAIN_TOKEN: TOKEN, FIXTURE_VERSION: "v1", FIXTURE_COLLIDE: "1" });
    children.push(c);
    const exit = await c.exited;
    expect(exit.code).not.toBe(0);
    expect(c.stderr()).toMatch(/taken by the OpenRTC control server.*ServerOptions\(\{ port: 0 \}\)/);
  });
});

