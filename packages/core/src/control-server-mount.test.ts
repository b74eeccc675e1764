// The deploy page mounted on a worker's control server: served under its prefix, and guarded
// exactly as GET /sessions is (it lists workers, tenants of stuck calls and audit records).
import { request, type OutgoingHttpHeaders } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { createControlServer, type ControlServer, type ControlServerMount, type ControlServerOptions } from "./control-server.ts";
import { createDeployPage, type DeployPage } from "./fleet-page.ts";
import { directSource } from "./fleet-sources.ts";
import { silentLogger } from "./logger.ts";
import { AgentPool } from "./pool.ts";

const TOKEN = "mount-t0ken-Never-Shown-42";
const open: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c();
});

/** A worker whose control server mounts a deploy page watching the worker itself. */
async function start(options: ControlServerOptions = {}): Promise<{ pool: AgentPool; server: ControlServer; page: DeployPage; port: number }> {
  const pool = new AgentPool({ deploymentVersion: "v1.0.0", workerId: "w-1", logger: silentLogger });
  let self = "";
  const page = createDeployPage({ source: directSource({ targets: () => Promise.resolve(self === "" ? [] : [self]), ...(options.drainToken === undefined ? {} : { token: options.drainToken }) }), intervalMs: 50, path: "/deploy" });
  const server = await createControlServer(pool, { ...options, mounts: [page] });
  self = server.url;
  pool.markReady();
  pool.startSession({ jobId: "job-1", metadata: { tenant: "acme" } });
  open.push(
    () => page.close(),
    () => server.close(),
    () => pool.close({ dropLiveSessions: true }),
  );
  return { pool, server, page, port: Number(new URL(server.url).port) };
}

/** The page's first poll ran before the server had its address: wait for a poll that read it. */
async function seen(page: DeployPage): Promise<void> {
  await expect.poll(() => (page.state().totals as { workers: number }).workers, { timeout: 10_000 }).toBe(1);
}

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A real request with exactly these headers (fetch would rewrite Host and Origin). */
function call(port: number, method: string, path: string, headers: OutgoingHttpHeaders = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, agent: false, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("a deploy page mounted on the control server", () => {
  it("serves GET /deploy, its data and its stream; the other routes are untouched", async () => {
    const { port, page } = await start();
    await seen(page);
    const html = await call(port, "GET", "/deploy");
    expect(html.status).toBe(200);
    expect(html.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(html.headers["content-security-policy"]).toContain("default-src 'none'");
    expect(html.body).toContain('data-events="/deploy/events" data-view="/deploy/view.json"');
    expect(html.body).toContain('<tr data-worker="w-1" data-phase="serving">');
    expect((await call(port, "GET", "/deploy/")).status).toBe(200);
    const state = await call(port, "GET", "/deploy/state.json");
    expect(JSON.parse(state.body)).toMatchObject({ status: "done", target: "v1.0.0", totals: { workers: 1, live_calls: 1 } });
    // The page reads this worker's /sessions as a trusted loopback caller: call ages are known.
    expect(JSON.parse(state.body).workers[0].oldest_call_seconds).not.toBe(null);
    const events = await new Promise<string>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/deploy/events", agent: false }, (res) => {
        let raw = "";
        res.on("data", (c: Buffer) => {
          raw += c.toString();
          if (raw.includes("event: view")) {
            req.destroy();
            resolve(`${res.headers["content-type"]}\n${raw}`);
          }
        });
      });
      req.on("error", reject);
      req.end();
    });
    expect(events).toMatch(/^text\/event-stream; charset=utf-8\nretry: 1000\n\nid: \d+\nevent: view\ndata: \{/);
    expect((await call(port, "GET", "/deploy/nope")).status).toBe(404);
    const post = await call(port, "POST", "/deploy");
    expect([post.status, post.headers.allow]).toEqual([405, "GET, HEAD"]);
    expect((await call(port, "GET", "/deployments")).status).toBe(404);
    expect((await call(port, "GET", "/livez")).status).toBe(200);
    expect(JSON.parse((await call(port, "GET", "/snapshot")).body)).toMatchObject({ worker_id: "w-1", active_sessions: 1 });
  });

  it.each<[string, ControlServerOptions, [OutgoingHttpHeaders, number][]]>([
    [
      "token, loopback not trusted",
      { drainToken: TOKEN, trustLoopback: false },
      [
        [{}, 401],
        [{ authorization: "Bearer wrong" }, 403],
        [{ authorization: `Bearer ${TOKEN}` }, 200],
      ],
    ],
    [
      "loopback trusted (bound to 127.0.0.1)",
      {},
      [
        [{}, 200],
        [{ "x-forwarded-for": "203.0.113.9" }, 403],
        [{ host: "attacker.example" }, 403],
        [{ origin: "https://attacker.example" }, 403],
        [{ "sec-fetch-site": "cross-site" }, 403],
        [{ "sec-fetch-site": "same-origin" }, 200],
      ],
    ],
    ["publicReads", { publicReads: true, trustLoopback: false }, [[{}, 200]]],
    ["no token, loopback not trusted", { trustLoopback: false }, [[{}, 403], [{ authorization: "Bearer x" }, 403]]],
  ])("is guarded like GET /sessions: %s", async (_name, options, cases) => {
    const { port, page } = await start(options);
    await seen(page);
    for (const [headers, status] of cases) {
      const sessions = await call(port, "GET", "/sessions", headers);
      const deploy = await call(port, "GET", "/deploy", headers);
      const data = await call(port, "GET", "/deploy/state.json", headers);
      const stream = await call(port, "HEAD", "/deploy/events", headers);
      expect([sessions.status, deploy.status, data.status, stream.status], JSON.stringify(headers)).toEqual([status, status, status, status]);
      if (status !== 200) {
        expect(deploy.body).not.toContain("acme");
        expect(deploy.body).not.toContain("w-1");
      }
      expect(deploy.body).not.toContain(TOKEN);
    }
  });

  it("a mount that declines a path gets the server's 404", async () => {
    const pool = new AgentPool({ deploymentVersion: "v1.0.0", logger: silentLogger });
    const mount: ControlServerMount = { path: "/x", handle: (req, res) => (req.url === "/x" ? (res.end("mine"), true) : false) };
    const server = await createControlServer(pool, { mounts: [mount] });
    open.push(() => server.close(), () => pool.close());
    const port = Number(new URL(server.url).port);
    expect(await call(port, "GET", "/x")).toMatchObject({ status: 200, body: "mine" });
    expect(await call(port, "GET", "/x/other")).toMatchObject({ status: 404, body: expect.stringContaining("no such endpoint: /x/other") });
  });

  it.each([
    ["/", /a mount path must start with \/ and not end with one/],
    ["deploy", /a mount path must start with \//],
    ["/deploy/", /not end with one/],
    ["/sessions", /mount \/sessions would hide \/sessions/],
    ["", /a mount path must start/],
  ])("refuses the mount path %j", async (path, message) => {
    const pool = new AgentPool({ logger: silentLogger });
    open.push(() => pool.close());
    await expect(createControlServer(pool, { mounts: [{ path, handle: () => false }] })).rejects.toThrow(message);
  });

  it("refuses two mounts where one would hide the other", async () => {
    const pool = new AgentPool({ logger: silentLogger });
    open.push(() => pool.close());
    await expect(createControlServer(pool, { mounts: [{ path: "/a", handle: () => false }, { path: "/a/b", handle: () => false }] })).rejects.toThrow(/mount \/a would hide \/a\/b/);
  });
});
