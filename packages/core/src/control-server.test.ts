import { afterEach, describe, expect, test } from "vitest";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { AgentPool, type MembershipGate } from "./pool.ts";
import { createControlServer, type ControlServer } from "./control-server.ts";
import { silentLogger } from "./logger.ts";
import { memorySink } from "./testing/memory-sink.ts";

const servers: ControlServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(options: Parameters<typeof createControlServer>[1] = {}, poolOptions: ConstructorParameters<typeof AgentPool>[0] = {}) {
  const sink = memorySink();
  const pool = new AgentPool({ deploymentVersion: "v1.0.0", workerId: "w-1", logger: silentLogger, auditSinks: [sink], ...poolOptions });
  const server = await createControlServer(pool, options);
  servers.push(server);
  return { pool, server, sink };
}

/** Sends raw bytes and returns the raw response (for malformed requests fetch refuses to send). */
function raw(url: string, payload: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(payload));
    let data = "";
    socket.on("data", (d) => (data += d.toString()));
    socket.on("end", () => resolve(data));
    socket.on("error", reject);
  });
}

function nonLoopbackAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

describe("control server", () => {
  test("livez stays 200 while draining; readyz is 503 until serving, then 503 again while draining", async () => {
    const { pool, server } = await start();
    expect((await fetch(`${server.url}/livez`)).status).toBe(200);
    let ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ reason: "starting" });
    pool.markReady();
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    pool.startSession({ jobId: "j1" });
    pool.beginDrain();
    expect((await fetch(`${server.url}/livez`)).status).toBe(200);
    ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ reason: "draining" });
  });

  test("readyz is 503 for a worker that is not a member", async () => {
    const gate: MembershipGate = { isMember: () => false, subscribe: () => () => {} };
    const { pool, server } = await start({}, { membership: gate });
    pool.markReady();
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ reason: "not a member of the active manifest" });
  });

  test("snapshot and metrics", async () => {
    const { pool, server } = await start();
    pool.startSession({ jobId: "j1", metadata: { tenant: "acme" } });
    const snap = await (await fetch(`${server.url}/snapshot`)).json();
    expect(snap).toMatchObject({ deployment_version: "v1.0.0", active_sessions: 1, sessions_by_tenant: { acme: 1 } });
    const metrics = await fetch(`${server.url}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    expect(await metrics.text()).toContain('openrtc_active_sessions{tenant="acme"} 1');
    const sessions = (await (await fetch(`${server.url}/sessions`)).json()) as { sessions: unknown[] };
    expect(sessions.sessions).toEqual([expect.objectContaining({ job_id: "j1", tenant: "acme" })]);
  });

  test("POST /drain from loopback: 202, idempotent, records actor and reason once", async () => {
    const { pool, server, sink } = await start();
    pool.startSession({ jobId: "j1" });
    const body = JSON.stringify({ actor: "deployer", reason: "v2 rollout" });
    const first = await fetch(`${server.url}/drain`, { method: "POST", body, headers: { "content-type": "application/json" } });
    expect(first.status).toBe(202);
    expect(await first.json()).toMatchObject({ draining: true, active_sessions: 1 });
    expect((await fetch(`${server.url}/drain`, { method: "POST" })).status).toBe(202);
    await pool.auditLog.flush();
    expect(sink.records.filter((r) => r.event === "deployment.drain_started")).toEqual([expect.objectContaining({ actor: "deployer", reason: "v2 rollout" })]);
  });

  test("POST /drain with a malformed body is 400 and does not drain", async () => {
    const { pool, server } = await start();
    for (const body of ["{not json", "[1]", '{"actor":5}']) {
      expect((await fetch(`${server.url}/drain`, { method: "POST", body })).status).toBe(400);
    }
    expect(pool.draining).toBe(false);
  });

  test("oversized body is 413; unknown path 404; wrong method 405 with Allow", async () => {
    const { pool, server } = await start({ maxBodyBytes: 64 });
    expect((await fetch(`${server.url}/drain`, { method: "POST", body: "x".repeat(10_000) })).status).toBe(413);
    expect(pool.draining).toBe(false);
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    const wrong = await fetch(`${server.url}/drain`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
    expect((await fetch(`${server.url}/snapshot`, { method: "DELETE" })).status).toBe(405);
    const head = await fetch(`${server.url}/livez`, { method: "HEAD" });
    expect(head.status).toBe(200);
  });

  test("a malformed request line gets 400 and the server keeps serving", async () => {
    const { server } = await start();
    const response = await raw(server.url, "GARBAGE\r\n\r\n");
    expect(response).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetch(`${server.url}/livez`)).status).toBe(200);
  });

  // Bound to all interfaces, loopback is not trusted: a caller from 127.0.0.1 is as untrusted as
  // one from off-host, so these run on every machine (over the external interface when there is one).
  test("non-loopback POST /drain needs the bearer token: none → 401, wrong → 403, right → 202", async () => {
    const address = nonLoopbackAddress() ?? "127.0.0.1";
    const { pool, server } = await start({ host: "0.0.0.0", drainToken: "s3cret-token" });
    const url = server.url.replace("0.0.0.0", address);
    expect((await fetch(`${url}/drain`, { method: "POST" })).status).toBe(401);
    const wrong = await fetch(`${url}/drain`, { method: "POST", headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(403);
    expect(await wrong.text()).not.toContain("s3cret-token");
    expect(pool.draining).toBe(false);
    const right = await fetch(`${url}/drain`, { method: "POST", headers: { authorization: "Bearer s3cret-token" } });
    expect(right.status).toBe(202);
    expect(pool.draining).toBe(true);
  });

  test("non-loopback POST /drain without a configured token is 403", async () => {
    const address = nonLoopbackAddress() ?? "127.0.0.1";
    const { pool, server } = await start({ host: "0.0.0.0" });
    const res = await fetch(`${server.url.replace("0.0.0.0", address)}/drain`, { method: "POST", headers: { authorization: "Bearer x" } });
    expect(res.status).toBe(403);
    expect(pool.draining).toBe(false);
  });

  test("a loopback caller with a wrong token is refused: a presented token is judged by itself", async () => {
    const { pool, server } = await start({ drainToken: "t" });
    expect((await fetch(`${server.url}/drain`, { method: "POST", headers: { authorization: "Bearer wrong" } })).status).toBe(403);
    expect(pool.draining).toBe(false);
  });

  test("query strings are ignored for routing", async () => {
    const { server } = await start();
    expect((await fetch(`${server.url}/livez?verbose=1`)).status).toBe(200);
  });
});
