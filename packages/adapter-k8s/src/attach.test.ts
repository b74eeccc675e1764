// attachKubernetes in this process: real HTTP (fetch, GET and HEAD), real files written the way
// the kubelet writes them (atomic `..data` symlink swap), real sockets.
import { createServer } from "node:http";
import { request } from "node:http";
import path from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { AgentPool, JobRejectedError, ManifestGate, staticManifest } from "@openrtc/core";
import { attachKubernetes, type KubernetesAttachment, type KubernetesOptions } from "./attach.ts";
import { kubernetesMembership } from "./membership.ts";
import { writePodInfo, writeProjectedVolume } from "./testing/kubelet.ts";
import { manifestJson, memoryLogger, memorySink, SECRET, TOKEN, until, useTempDir } from "./testing/helpers.ts";

const tempDir = useTempDir();
const open: KubernetesAttachment[] = [];
afterEach(async () => {
  for (const a of open.splice(0)) await a.close();
});

function makePool(extra: ConstructorParameters<typeof AgentPool>[0] = {}) {
  const sink = memorySink();
  const logger = memoryLogger();
  const pool = new AgentPool({ deploymentVersion: "v1.0.0", auditSinks: [sink], logger, ...extra });
  return { pool, sink, logger };
}

async function attach(pool: AgentPool, options: KubernetesOptions = {}) {
  const exit = vi.fn();
  const k = await attachKubernetes(pool, { host: "127.0.0.1", port: 0, drainToken: TOKEN, exit, ...options });
  open.push(k);
  return { k, exit };
}

async function get(url: string, method = "GET") {
  const res = await fetch(url, { method });
  const text = await res.text();
  return { status: res.status, text, body: text.startsWith("{") ? (JSON.parse(text) as Record<string, unknown>) : undefined, headers: res.headers };
}

function drain(url: string, token: string | undefined, query = "") {
  return fetch(`${url}/drain${query}`, { method: "POST", headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
}

describe("probes", () => {
  test("livez 200 from start to close; readyz 503 until registered, 200 serving, 503 at once on drain; GET and HEAD", async () => {
    const { pool } = makePool();
    const { k } = await attach(pool);
    expect((await get(`${k.url}/livez`)).status).toBe(200);
    const starting = await get(`${k.url}/readyz`);
    expect(starting.status).toBe(503);
    expect(starting.body).toMatchObject({ code: "starting" });
    const headStarting = await get(`${k.url}/readyz`, "HEAD");
    expect(headStarting.status).toBe(503);
    expect(headStarting.text).toBe("");
    pool.markReady();
    expect((await get(`${k.url}/readyz`)).status).toBe(200);
    expect((await get(`${k.url}/readyz`, "HEAD")).status).toBe(200);
    expect((await get(`${k.url}/livez`, "HEAD")).status).toBe(200);
    // Keep-alive while serving, Connection: close once draining.
    expect((await get(`${k.url}/readyz`)).headers.get("connection")).not.toBe("close");
    pool.startSession({ jobId: "call-1" });
    pool.beginDrain({ actor: "test" });
    const draining = await get(`${k.url}/readyz`);
    expect(draining.status).toBe(503);
    expect(draining.body).toMatchObject({ code: "draining", reject_reason: "draining" });
    expect(draining.headers.get("connection")).toBe("close");
    const live = await get(`${k.url}/livez`);
    expect(live.status).toBe(200);
    expect(live.headers.get("connection")).toBe("close");
    pool.session("call-1")!.end();
  });

  test("after the drain, livez stays 200 through shutdownDelayMs (pool closed), then the process exits", async () => {
    const { pool } = makePool();
    const { k, exit } = await attach(pool, { shutdownDelayMs: 2000 });
    pool.markReady();
    pool.beginDrain();
    await until(() => pool.state === "closed", "pool closed");
    const res = await get(`${k.url}/livez`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: "closed" });
    expect(exit).not.toHaveBeenCalled();
    await until(() => exit.mock.calls.length > 0, "exit after the delay");
    expect(exit).toHaveBeenCalledWith(0);
  });
});

describe("drain over HTTP (preStop)", () => {
  test("a token is required on all interfaces; a wrong token is refused; the drain record names the pod", async () => {
    const { pool, sink } = makePool();
    await expect(attachKubernetes(pool, { host: "0.0.0.0", port: 0, exit: vi.fn() })).rejects.toThrow(/OPENRTC_DRAIN_TOKEN/);
    await expect(attachKubernetes(pool, { host: "127.0.0.1", port: 0, drainToken: "short", exit: vi.fn() })).rejects.toThrow(/at least 16/);
    vi.stubEnv("POD_NAME", "worker-v1-abc");
    vi.stubEnv("POD_NAMESPACE", "voice");
    try {
      const { k } = await attach(pool, { host: "0.0.0.0" });
      const url = k.url.replace("0.0.0.0", "127.0.0.1");
      pool.markReady();
      expect((await drain(url, undefined)).status).toBe(401);
      expect((await drain(url, "wrong-token-wrong-token")).status).toBe(403);
      expect(pool.draining).toBe(false);
      const res = await fetch(`${url}/drain`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ actor: "kubernetes", reason: "preStop hook" }) });
      expect(res.status).toBe(202);
      await until(() => sink.records.find((r) => r.event === "deployment.drain_started"), "drain_started");
      expect(sink.records.find((r) => r.event === "deployment.drain_started")).toMatchObject({
        actor: "kubernetes",
        auth: "token",
        pod_name: "worker-v1-abc",
        pod_namespace: "voice",
        reason: "preStop hook",
      });
    } finally {
      vi.unstubAllEnvs();
    }
  });

  test("POST /drain?wait=true answers only once every live call ended, not when the first does", async () => {
    const { pool } = makePool();
    const { k } = await attach(pool);
    pool.markReady();
    expect((await drain(k.url, TOKEN, "?wait=maybe")).status).toBe(400);
    expect(pool.draining).toBe(false);
    const a = pool.startSession({ jobId: "a" });
    const b = pool.startSession({ jobId: "b" });
    let answered: number | undefined;
    const waiting = drain(k.url, TOKEN, "?wait=true").then(async (res) => {
      answered = res.status;
      return (await res.json()) as Record<string, unknown>;
    });
    await until(() => pool.draining, "draining");
    a.end();
    // Round trips on the same server: had the wait answered on the first end, it would be in.
    for (let i = 0; i < 5; i++) expect((await get(`${k.url}/snapshot`)).body).toMatchObject({ active_sessions: 1 });
    expect(answered).toBeUndefined();
    b.end();
    expect(await waiting).toMatchObject({ drained: true, active_sessions: 0 });
    expect(answered).toBe(200);
  });
});

describe("Downward API", () => {
  test("the drain annotation, written by an atomic symlink swap, drains with actor kubernetes and the pod's name and namespace", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "worker-v1-7d9", namespace: "voice", labels: { "app.kubernetes.io/version": "v1.0.0" }, annotations: { "kubernetes.io/config.seen": "x" } });
    const { pool, sink, logger } = makePool();
    const { k } = await attach(pool, { podInfoDir: dir });
    pool.markReady();
    pool.startSession({ jobId: "live" });
    expect((await get(`${k.url}/readyz`)).status).toBe(200);
    expect(logger.text()).not.toMatch(/differs/);
    writePodInfo(dir, { name: "worker-v1-7d9", namespace: "voice", annotations: { "kubernetes.io/config.seen": "x", "openrtc.io/drain": "true" } });
    await until(async () => (await get(`${k.url}/readyz`)).status === 503, "readyz 503 after the annotation");
    expect((await get(`${k.url}/livez`)).status).toBe(200);
    expect(() => pool.startSession({ jobId: "late" })).toThrow(JobRejectedError);
    await until(() => sink.records.find((r) => r.event === "deployment.drain_started"), "drain_started");
    expect(sink.records.find((r) => r.event === "deployment.drain_started")).toMatchObject({
      actor: "kubernetes",
      pod_name: "worker-v1-7d9",
      pod_namespace: "voice",
      trigger: "annotation",
      active_sessions: 1,
    });
    pool.session("live")!.end();
  });

  test("a pod started with the annotation already set drains at attach", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "p", namespace: "n", annotations: { "openrtc.io/drain": "true" } });
    const { pool } = makePool();
    const { exit } = await attach(pool, { podInfoDir: dir });
    expect(pool.state).not.toBe("starting");
    // Nothing was live: the drain completes and the process exits 0.
    await until(() => exit.mock.calls.length > 0, "exit");
    expect(exit).toHaveBeenCalledWith(0);
  });

  test("a bad annotations file is reported and drains nothing; the fixed file is read again", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "p", namespace: "n", annotationsText: 'openrtc.io/drain=true\nbroken line without equals "' });
    const { pool, logger } = makePool();
    const { k } = await attach(pool, { podInfoDir: dir });
    pool.markReady();
    const live = pool.startSession({ jobId: "live" });
    expect(pool.draining).toBe(false);
    expect(logger.text()).toMatch(/annotations file could not be parsed/);
    writePodInfo(dir, { name: "p", namespace: "n", annotations: { "openrtc.io/drain": "yes" } });
    await until(() => logger.text().includes('not to \\"true\\"') || logger.text().includes("not to \"true\""), "the ignored value logged");
    expect(pool.draining).toBe(false);
    writePodInfo(dir, { name: "p", namespace: "n", annotations: { "openrtc.io/drain": "true" } });
    await until(async () => (await get(`${k.url}/readyz`)).status === 503, "drain after the fix");
    live.end();
  });

  test("a podInfoDir that does not exist is an error naming the volume; no POD_NAME is a warning", async () => {
    const { pool, logger } = makePool();
    await expect(attachKubernetes(pool, { host: "127.0.0.1", port: 0, podInfoDir: path.join(tempDir(), "missing"), exit: vi.fn() })).rejects.toThrow(/Downward API volume/);
    await attach(pool);
    expect(logger.text()).toMatch(/pod name unknown/);
  });

  test("a pool version that differs from the pod's version label is logged (the code wins)", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "p", namespace: "n", labels: { "app.kubernetes.io/version": "v9.9.9" } });
    const { pool, logger } = makePool();
    await attach(pool, { podInfoDir: dir });
    expect(pool.deploymentVersion).toBe("v1.0.0");
    expect(logger.text()).toMatch(/differs from the pod's app.kubernetes.io\/version label/);
  });

  test("a pool with no version in code takes the pod's version label (snapshot, audit, membership)", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "p", namespace: "n", labels: { "app.kubernetes.io/version": "v9.9.9" } });
    const untagged = makePool({ deploymentVersion: undefined });
    const { k } = await attach(untagged.pool, { podInfoDir: dir });
    expect(untagged.pool.deploymentVersion).toBe("v9.9.9");
    expect(untagged.logger.text()).toMatch(/taken from the pod's label/);
    expect((await get(`${k.url}/snapshot`)).body).toMatchObject({ deployment_version: "v9.9.9" });
    untagged.pool.markReady();
    untagged.pool.beginDrain({ actor: "test", reason: "check the record's version" });
    await untagged.pool.auditLog.flush();
    expect(untagged.sink.records.find((r) => r.event === "deployment.drain_started")).toMatchObject({ version: "v9.9.9" });
    // Too late: a pool that already serves keeps its (missing) version and says why.
    const late = makePool({ deploymentVersion: undefined });
    late.pool.markReady();
    await attach(late.pool, { podInfoDir: dir });
    expect(late.pool.deploymentVersion).toBeNull();
    expect(late.logger.text()).toMatch(/could not take it.*attach before runApp/);
  });
});

describe("the mounted manifest ConfigMap", () => {
  test("re-read on the kubelet's ..data swap: the version leaving it fails readiness (membership) and rejects jobs", async () => {
    const dir = tempDir();
    writeProjectedVolume(dir, { "manifest.json": manifestJson(1, ["v1.0.0", "v2.0.0"]) });
    const { pool, sink } = makePool({ membership: kubernetesMembership() });
    expect(pool.member).toBe(false); // fail closed until attached
    const { k } = await attach(pool, { manifestFile: path.join(dir, "manifest.json"), manifestSecrets: `old-secret-0123456789abcdef, ${SECRET}` });
    expect(pool.member).toBe(true);
    pool.markReady();
    expect((await get(`${k.url}/readyz`)).status).toBe(200);
    writeProjectedVolume(dir, { "manifest.json": manifestJson(2, ["v2.0.0"]) });
    await until(async () => (await get(`${k.url}/readyz`)).status === 503, "readyz 503 after the swap");
    expect((await get(`${k.url}/readyz`)).body).toMatchObject({ code: "not_member", reject_reason: "membership" });
    expect(() => pool.startSession({ jobId: "j" })).toThrow(/not in the active manifest/);
    await until(() => sink.records.find((r) => r.event === "worker.rejected"), "worker.rejected");
    expect(sink.records.find((r) => r.event === "worker.rejected")).toMatchObject({ reason: "membership" });
    // A forged manifest (wrong secret) and a torn write are refused and recorded; the current one stays.
    writeProjectedVolume(dir, { "manifest.json": manifestJson(3, ["v1.0.0"], "forged-secret-0123456789abcdef") });
    await until(() => sink.records.find((r) => r.event === "worker.manifest_rejected"), "manifest_rejected");
    writeProjectedVolume(dir, { "manifest.json": '{"seq": 4, "active_' });
    await until(() => sink.records.filter((r) => r.event === "worker.manifest_rejected").length >= 2, "second rejection");
    expect(pool.member).toBe(false);
    expect(sink.records.filter((r) => r.event === "worker.manifest_rejected").map((r) => r.reason)).toEqual(["bad_signature", "malformed"]);
    // Back in: seq 5 lists v1 again.
    writeProjectedVolume(dir, { "manifest.json": manifestJson(5, ["v1.0.0"]) });
    await until(async () => (await get(`${k.url}/readyz`)).status === 200, "readyz 200 again");
  });

  test("a pool built with no gate takes the mounted manifest before it serves", async () => {
    const dir = tempDir();
    writeProjectedVolume(dir, { "manifest.json": manifestJson(1, ["v2.0.0"]) });
    const { pool, sink } = makePool();
    expect(pool.member).toBe(true);
    const { k } = await attach(pool, { manifestFile: path.join(dir, "manifest.json"), manifestSecrets: [SECRET] });
    pool.markReady();
    expect(pool.member).toBe(false); // v1.0.0 is not listed
    expect((await get(`${k.url}/readyz`)).body).toMatchObject({ code: "not_member", reject_reason: "membership" });
    expect((await get(`${k.url}/manifest`)).body).toMatchObject({ seq: 1, active_versions: ["v2.0.0"] });
    await pool.auditLog.flush();
    expect(sink.records.find((r) => r.event === "worker.membership_changed")).toMatchObject({ member: false });
    writeProjectedVolume(dir, { "manifest.json": manifestJson(2, ["v1.0.0", "v2.0.0"]) });
    await until(async () => (await get(`${k.url}/readyz`)).status === 200, "readyz 200 once listed");
  });

  test("a missing manifest file keeps the worker out (no_manifest) and is recorded", async () => {
    const { pool, sink } = makePool({ membership: kubernetesMembership() });
    const { k } = await attach(pool, { manifestFile: path.join(tempDir(), "manifest.json"), manifestSecrets: [SECRET] });
    pool.markReady();
    expect((await get(`${k.url}/readyz`)).body).toMatchObject({ code: "no_manifest", reject_reason: "membership" });
    await until(() => sink.records.find((r) => r.event === "worker.manifest_rejected"), "manifest_rejected");
    expect(sink.records.find((r) => r.event === "worker.manifest_rejected")).toMatchObject({ reason: "unreadable" });
  });

  test("configuration errors say what to do", async () => {
    const file = path.join(tempDir(), "m.json");
    const serving = makePool();
    serving.pool.markReady();
    await expect(attach(serving.pool, { manifestFile: file, manifestSecrets: [SECRET] })).rejects.toThrow(/before the worker serves.*membership: kubernetesMembership\(\)/);
    const foreign = makePool({ membership: new ManifestGate({ secrets: [SECRET], sources: [staticManifest(manifestJson(1, ["v1.0.0"]))] }) });
    await expect(attach(foreign.pool, { manifestFile: file, manifestSecrets: [SECRET] })).rejects.toThrow(/its own membership gate/);
    const noFile = makePool({ membership: kubernetesMembership() });
    await expect(attach(noFile.pool)).rejects.toThrow(/no manifestFile/);
    const noSecret = makePool({ membership: kubernetesMembership() });
    vi.stubEnv("OPENRTC_MANIFEST_SECRETS", " , ");
    try {
      await expect(attach(noSecret.pool, { manifestFile: file })).rejects.toThrow(/OPENRTC_MANIFEST_SECRETS/);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe("ports", () => {
  test("a taken port fails with the @livekit/agents health-server hint", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as { port: number }).port;
    const { pool } = makePool();
    try {
      await expect(attach(pool, { port })).rejects.toThrow(/ServerOptions\(\{ port: 0 \}\)/);
    } finally {
      blocker.close();
    }
  });

  test("defaults: host 0.0.0.0, port from OPENRTC_PORT, drainToken from OPENRTC_DRAIN_TOKEN", async () => {
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, "127.0.0.1", r));
    const port = (free.address() as { port: number }).port;
    await new Promise((r) => free.close(r));
    const { pool } = makePool();
    vi.stubEnv("OPENRTC_PORT", String(port));
    vi.stubEnv("OPENRTC_DRAIN_TOKEN", TOKEN);
    try {
      const k = await attachKubernetes(pool, { exit: vi.fn() });
      open.push(k);
      expect(k.url).toBe(`http://0.0.0.0:${port}`);
      pool.markReady();
      const url = `http://127.0.0.1:${port}`;
      expect((await drain(url, "wrong-token-wrong-token")).status).toBe(403);
      const accepted = await drain(url, TOKEN);
      expect(accepted.status).toBe(202);
      expect(await accepted.json()).toMatchObject({ draining: true });
    } finally {
      vi.unstubAllEnvs();
    }
  });

  test("OPENRTC_PORT sets the port; a malformed one is an error", async () => {
    const { pool } = makePool();
    vi.stubEnv("OPENRTC_PORT", "80x");
    try {
      await expect(attachKubernetes(pool, { host: "127.0.0.1", drainToken: TOKEN, exit: vi.fn() })).rejects.toThrow(/OPENRTC_PORT/);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe("close()", () => {
  test("removes every listener it added and stops its server; twice is fine", async () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "p", namespace: "n", annotations: {} });
    const counts = () => ["SIGTERM", "SIGINT", "uncaughtExceptionMonitor"].map((e) => process.listenerCount(e));
    const before = counts();
    const { pool } = makePool({ membership: kubernetesMembership() });
    const mdir = tempDir();
    writeProjectedVolume(mdir, { "manifest.json": manifestJson(1, ["v1.0.0"]) });
    const { k } = await attach(pool, { podInfoDir: dir, manifestFile: path.join(mdir, "manifest.json"), manifestSecrets: [SECRET] });
    expect(counts()).not.toEqual(before);
    const stateListeners = pool.listenerCount("state");
    expect(pool.listenerCount("drainStuck")).toBe(1);
    await k.close();
    await k.close();
    expect(counts()).toEqual(before);
    expect(pool.listenerCount("state")).toBe(stateListeners);
    expect(pool.listenerCount("drainStuck")).toBe(0);
    await expect(fetch(`${k.url}/livez`)).rejects.toThrow();
    // The watchers are gone too: a drain annotation written now changes nothing.
    writePodInfo(dir, { name: "p", namespace: "n", annotations: { "openrtc.io/drain": "true" } });
    writeProjectedVolume(mdir, { "manifest.json": manifestJson(2, []) });
    await new Promise((r) => setTimeout(r, 1500)); // longer than the annotation poll: nothing may react
    expect(pool.draining).toBe(false);
    expect(pool.member).toBe(true);
  });

  test("the lifecycle stops the server only after the drain, and exits through the injected exit", async () => {
    const { pool } = makePool();
    const { k, exit } = await attach(pool);
    pool.markReady();
    const s = pool.startSession({ jobId: "x" });
    pool.beginDrain();
    expect((await get(`${k.url}/livez`)).status).toBe(200);
    expect(exit).not.toHaveBeenCalled();
    s.end();
    await until(() => exit.mock.calls.length > 0, "exit");
    expect(exit).toHaveBeenCalledWith(0);
    await expect(new Promise((resolve, reject) => request(`${k.url}/livez`).on("error", reject).on("response", resolve).end())).rejects.toThrow();
  });
});
