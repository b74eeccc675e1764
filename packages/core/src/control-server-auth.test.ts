import { request, type OutgoingHttpHeaders } from "node:http";
import { afterEach, describe, expect, test } from "vitest";
import { AgentPool } from "./pool.ts";
import { createControlServer, type ControlServer, type ControlServerOptions } from "./control-server.ts";
import type { Logger } from "./logger.ts";
import { silentLogger } from "./logger.ts";
import { ManifestGate, signManifest } from "./manifest.ts";
import { memorySink } from "./testing/memory-sink.ts";

const TOKEN = "drain-t0ken-Never-Logged-99";
const servers: ControlServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(options: ControlServerOptions = {}, poolOptions: ConstructorParameters<typeof AgentPool>[0] = {}) {
  const sink = memorySink();
  const pool = new AgentPool({ deploymentVersion: "v1.0.0", workerId: "w-1", logger: silentLogger, auditSinks: [sink], ...poolOptions });
  const server = await createControlServer(pool, options);
  servers.push(server);
  const port = Number(new URL(server.url).port);
  return { pool, server, sink, port };
}

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A real HTTP request with exactly these headers (fetch would rewrite Host and Origin). */
function call(port: number, method: string, path: string, headers: OutgoingHttpHeaders = {}, options: { body?: string; localAddress?: string; host?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: options.host ?? "127.0.0.1", port, method, path, headers: { host: `127.0.0.1:${port}`, ...headers }, ...(options.localAddress ? { localAddress: options.localAddress } : {}) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("token auth (runs on every machine: trustLoopback off)", () => {
  test("POST /drain: no token → 401 with WWW-Authenticate, wrong → 403, right → 202 with auth recorded as token", async () => {
    const { pool, port, sink } = await start({ drainToken: TOKEN, trustLoopback: false });
    const none = await call(port, "POST", "/drain");
    expect(none.status).toBe(401);
    expect(none.headers["www-authenticate"]).toMatch(/^Bearer/);
    for (const authorization of ["Bearer nope", "Basic abc", "Bearer", `Bearer ${TOKEN}x`, `bearer  ${TOKEN} extra`]) {
      const wrong = await call(port, "POST", "/drain", { authorization });
      expect(wrong.status).toBe(403);
      expect(wrong.body).not.toContain(TOKEN);
    }
    expect(pool.draining).toBe(false);
    const right = await call(port, "POST", "/drain", { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, { body: JSON.stringify({ actor: "deployer", reason: "v2 rollout" }) });
    expect(right.status).toBe(202);
    expect(pool.draining).toBe(true);
    await pool.auditLog.flush();
    const started = sink.records.find((r) => r.event === "deployment.drain_started");
    expect(started).toMatchObject({ actor: "deployer", reason: "v2 rollout", auth: "token", remote_address: "127.0.0.1" });
    expect(JSON.stringify(sink.records)).not.toContain(TOKEN);
  });

  test("without a configured token and without loopback trust every caller is refused (403)", async () => {
    const logs: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (_f, m) => logs.push(m) };
    const { pool, port } = await start({ host: "127.0.0.1", trustLoopback: false }, { logger });
    expect((await call(port, "POST", "/drain")).status).toBe(403);
    expect((await call(port, "POST", "/drain", { authorization: "Bearer x" })).status).toBe(403);
    expect(pool.draining).toBe(false);
    expect(logs.some((m) => m.includes("refuse every caller"))).toBe(true);
  });

  test("bound to all interfaces, loopback is not trusted by default: a token is required even from 127.0.0.1", async () => {
    const { pool, port } = await start({ host: "0.0.0.0", drainToken: TOKEN });
    expect((await call(port, "POST", "/drain")).status).toBe(401);
    expect(pool.draining).toBe(false);
    expect((await call(port, "POST", "/drain", { authorization: `Bearer ${TOKEN}` })).status).toBe(202);
  });

  test("GET /sessions and GET /manifest take the same auth as /drain", async () => {
    const { pool, port } = await start({ drainToken: TOKEN, trustLoopback: false });
    pool.startSession({ jobId: "job-1", roomName: "secret-room" });
    for (const path of ["/sessions", "/manifest"]) {
      const denied = await call(port, "GET", path);
      expect(denied.status).toBe(401);
      expect(denied.body).not.toContain("secret-room");
    }
    const sessions = await call(port, "GET", "/sessions", { authorization: `Bearer ${TOKEN}` });
    expect(sessions.status).toBe(200);
    expect(JSON.parse(sessions.body).sessions[0]).toMatchObject({ job_id: "job-1", room_name: "secret-room" });
    // No gate configured: 404 with a hint, once authorised.
    expect((await call(port, "GET", "/manifest", { authorization: `Bearer ${TOKEN}` })).status).toBe(404);
  });

  test("publicReads opens /sessions and /manifest, never /drain", async () => {
    const { pool, port } = await start({ drainToken: TOKEN, trustLoopback: false, publicReads: true });
    expect((await call(port, "GET", "/sessions")).status).toBe(200);
    expect((await call(port, "POST", "/drain")).status).toBe(401);
    expect(pool.draining).toBe(false);
  });

  test("GET /manifest shows the accepted manifest (seq, versions, times, source), never the signature", async () => {
    const secret = "control-manifest-secret";
    const clock = () => 5000;
    const gate = new ManifestGate({ secrets: [secret], clock, logger: silentLogger });
    const manifest = signManifest({ seq: 9, activeVersions: ["v1.0.0"], issuedAt: 4000, expiresAt: 9000, secret });
    gate.offer(manifest, "file:/etc/openrtc/manifest.json");
    const { port } = await start({ drainToken: TOKEN, trustLoopback: false }, { membership: gate, clock });
    const res = await call(port, "GET", "/manifest", { authorization: `Bearer ${TOKEN}` });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ state: "active", seq: 9, active_versions: ["v1.0.0"], issued_at: 4000, expires_at: 9000, source: "file:/etc/openrtc/manifest.json" });
    expect(res.body).not.toContain(manifest.signature);
  });
});

describe("loopback trust (default when bound to loopback): only a real local caller", () => {
  test("a plain local POST /drain is accepted and recorded with auth loopback (drainFields cannot replace auth or remote_address)", async () => {
    const { pool, port, sink } = await start({ drainFields: { pod_name: "worker-0", remote_address: "spoofed", auth: "spoofed" } });
    expect((await call(port, "POST", "/drain", {}, { body: '{"actor":"ops"}' })).status).toBe(202);
    await pool.auditLog.flush();
    expect(sink.records.find((r) => r.event === "deployment.drain_started")).toMatchObject({ actor: "ops", auth: "loopback", pod_name: "worker-0", remote_address: "127.0.0.1" });
  });

  test.each([
    ["a foreign Host (DNS rebinding)", { host: "evil.example:8081" }],
    ["no Host at all", { host: "" }],
    ["a cross-site Origin (CSRF)", { origin: "https://evil.example" }],
    ["Origin null", { origin: "null" }],
    ["Sec-Fetch-Site cross-site", { "sec-fetch-site": "cross-site" }],
    ["Sec-Fetch-Site same-site", { "sec-fetch-site": "same-site" }],
    ["X-Forwarded-For (a reverse proxy on this host)", { "x-forwarded-for": "203.0.113.9" }],
    ["Forwarded", { forwarded: "for=203.0.113.9" }],
    ["X-Envoy-External-Address (a sidecar)", { "x-envoy-external-address": "203.0.113.9" }],
  ])("a loopback request with %s is refused (403; Node itself answers 400 to a missing Host) and does not drain", async (_what, headers) => {
    const { pool, port } = await start({ drainToken: TOKEN });
    const res = await call(port, "POST", "/drain", { "content-type": "text/plain", ...headers }, { body: "x" });
    expect((headers as { host?: string }).host === "" ? 400 : 403).toBe(res.status);
    expect(pool.draining).toBe(false);
  });

  test("a browser-style text/plain POST from a foreign page is refused; the same from a loopback origin is accepted", async () => {
    const { pool, port } = await start();
    const foreign = await call(port, "POST", "/drain", { "content-type": "text/plain", origin: "http://attacker.test", "sec-fetch-site": "cross-site" }, { body: "{}" });
    expect(foreign.status).toBe(403);
    expect(pool.draining).toBe(false);
    const local = await call(port, "POST", "/drain", { origin: `http://localhost:${port}`, "sec-fetch-site": "same-origin" });
    expect(local.status).toBe(202);
  });

  test("a caller from 127.0.0.6 (how an Istio sidecar forwards inbound traffic) is not trusted as loopback; a wrong token from it gets 403", async () => {
    const { pool, port } = await start({ drainToken: TOKEN });
    const plain = await call(port, "POST", "/drain", {}, { localAddress: "127.0.0.6" });
    expect(plain.status).toBe(401);
    const wrong = await call(port, "POST", "/drain", { authorization: "Bearer wrong" }, { localAddress: "127.0.0.6" });
    expect(wrong.status).toBe(403);
    expect(pool.draining).toBe(false);
    const right = await call(port, "POST", "/drain", { authorization: `Bearer ${TOKEN}` }, { localAddress: "127.0.0.6" });
    expect(right.status).toBe(202);
  });

  test("a wrong token from 127.0.0.1 is refused even though loopback is trusted", async () => {
    const { pool, port } = await start({ drainToken: TOKEN });
    expect((await call(port, "POST", "/drain", { authorization: "Bearer wrong" })).status).toBe(403);
    expect(pool.draining).toBe(false);
  });

  test("/readyz names the membership reason: no_manifest for a fail-closed gate without a manifest", async () => {
    const gate = new ManifestGate({ secrets: ["s"], logger: silentLogger });
    const { pool, port } = await start({}, { membership: gate });
    pool.markReady();
    const res = await call(port, "GET", "/readyz");
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toEqual({ status: "not ready", reason: "no_manifest", code: "no_manifest", reject_reason: "membership" });
  });
});
