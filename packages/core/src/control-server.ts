import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { timingSafeEqual, createHash } from "node:crypto";
import { describeError } from "./isolation.ts";
import type { AgentPool } from "./pool.ts";

export interface ControlServerOptions {
  host?: string;
  port?: number;
  /**
   * Bearer token for `POST /drain` (and `GET /sessions`, `GET /manifest` unless `publicReads`).
   * Never logged. A request that presents a token must present the right one: a wrong token is
   * refused even from loopback.
   */
  drainToken?: string;
  /**
   * Let a caller on this host in without a token. Default: true only when `host` is a loopback
   * address; bound to all interfaces (`0.0.0.0`, `::`) or a routable address, a token is required.
   * A loopback-trusted request must come from 127.0.0.1 or ::1 (not other 127/8 addresses, such
   * as the 127.0.0.6 an Istio sidecar forwards from), carry no proxy headers (`Forwarded`,
   * `X-Forwarded-*`, `Via`, `X-Real-IP`), a loopback `Host` (DNS rebinding), and no cross-site
   * `Origin` or `Sec-Fetch-Site` (CSRF from a browser on the host); otherwise it gets 403.
   */
  trustLoopback?: boolean;
  /** Serve `GET /sessions` (rooms, jobs, tenants) and `GET /manifest` without auth. Default false. */
  publicReads?: boolean;
  /** Largest accepted request body, in bytes. Default 4 KiB. */
  maxBodyBytes?: number;
  /**
   * Extra flat fields written on the `deployment.drain_started` record of a drain begun through
   * `POST /drain` (e.g. the Kubernetes pod name and namespace). What the server establishes
   * itself (`remote_address`, `auth`) is never overridden by them.
   */
  drainFields?: Readonly<Record<string, string | number | boolean>>;
  /**
   * Handlers served under a path prefix: the deploy page (`createDeployPage({ path: "/deploy" })`)
   * answers `GET /deploy` and what lies below it. A mount shows what `GET /sessions` would (the
   * deploy page lists workers, tenants of stuck calls and audit records), so it is guarded the
   * same way: public only with `publicReads`, else the drain token or a trusted loopback caller.
   */
  mounts?: readonly ControlServerMount[];
}

/** A handler for every request under `path` (`/deploy`: `/deploy`, `/deploy/...`). */
export interface ControlServerMount {
  readonly path: string;
  /** Answers the request and returns true, or returns false to let the server answer 404. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

export interface ControlServer {
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void | Promise<void>;

interface Route {
  readonly methods: Readonly<Record<string, Handler>>;
}

const JSON_TYPE = "application/json; charset=utf-8";
const EMPTY_BODY = Buffer.alloc(0);

/**
 * The worker's control endpoints (node:http, no framework): health for the platform, metrics
 * for Prometheus, the snapshot for `openrtc top`, and a drain trigger for coordinators.
 * Adapters (Kubernetes, systemd) reuse it.
 */
export async function createControlServer(pool: AgentPool, options: ControlServerOptions = {}): Promise<ControlServer> {
  const host = options.host ?? "127.0.0.1";
  const maxBody = options.maxBodyBytes ?? 4096;
  if (options.drainToken !== undefined && typeof options.drainToken !== "string") {
    throw new TypeError("createControlServer: drainToken must be a string");
  }
  const tokenDigest = options.drainToken === undefined || options.drainToken === "" ? undefined : digest(options.drainToken);
  const trustLoopback = options.trustLoopback ?? isLoopbackHost(host);
  const auth: AuthPolicy = { tokenDigest, trustLoopback };
  const publicReads = options.publicReads === true;
  if (tokenDigest === undefined && !trustLoopback) {
    pool.logger.warn(
      { host },
      "control server: no drainToken and loopback is not trusted (bound beyond loopback); POST /drain, /sessions and /manifest will refuse every caller",
    );
  }
  /** Runs `handler` only for an authorised caller; `/sessions` and `/manifest` unless publicReads. */
  const guarded =
    (handler: (req: IncomingMessage, res: ServerResponse, body: Buffer, how: AuthMethod) => void | Promise<void>, isRead: boolean): Handler =>
    (req, res, body) => {
      if (isRead && publicReads) return handler(req, res, body, "public");
      const decision = authorize(req, auth);
      if (!decision.ok) {
        if (decision.status === 401) res.setHeader("WWW-Authenticate", 'Bearer realm="openrtc"');
        return sendJson(res, decision.status, { error: decision.message });
      }
      return handler(req, res, body, decision.how);
    };

  const mounts = [...(options.mounts ?? [])];
  /** The mount serving `path`, if any. */
  const mountFor = (path: string): ControlServerMount | undefined => mounts.find((m) => path === m.path || path.startsWith(`${m.path}/`));

  const routes: Record<string, Route> = {
    "/livez": {
      methods: {
        // 200 for as long as this process answers, closed included: after the pool closes the
        // lifecycle still flushes the audit log and lingers (metricsLingerMs) before it exits,
        // and a failing liveness probe then would only get a pod killed that is about to exit.
        GET: (_req, res) => sendJson(res, 200, { status: pool.state === "closed" ? "closed" : "alive", state: pool.state }),
      },
    },
    "/readyz": {
      methods: {
        GET: (_req, res) => {
          if (pool.ready) return sendJson(res, 200, { status: "ready" });
          // `reject_reason` is what a job offered now would be refused for (`draining`,
          // `membership`), the same reason its `worker.rejected` record would carry.
          const rejectReason = pool.rejectReason();
          if (pool.state !== "serving") return sendJson(res, 503, { status: "not ready", reason: pool.state, code: pool.state, reject_reason: rejectReason });
          // `code` is the machine-readable reason; `reason` keeps its old text for a version that
          // is simply not listed, and is the code itself for the newer cases.
          const code = pool.membershipReason ?? "not_member";
          sendJson(res, 503, { status: "not ready", reason: code === "not_member" ? "not a member of the active manifest" : code, code, reject_reason: rejectReason });
        },
      },
    },
    "/metrics": {
      methods: {
        GET: async (_req, res) => {
          const text = await pool.metrics.scrape();
          send(res, 200, pool.metrics.registry.contentType, text);
        },
      },
    },
    "/snapshot": {
      methods: { GET: (_req, res) => sendJson(res, 200, pool.runtimeSnapshot()) },
    },
    "/sessions": {
      methods: { GET: guarded((_req, res) => sendJson(res, 200, { sessions: pool.liveSessions() }), true) },
    },
    "/manifest": {
      methods: {
        GET: guarded((_req, res) => {
          const status = pool.manifestStatus();
          if (status === null) return sendJson(res, 404, { error: "this worker has no manifest gate (AgentPoolOptions.membership)" });
          sendJson(res, 200, status);
        }, true),
      },
    },
    "/drain": {
      methods: {
        POST: guarded(async (req, res, body, how) => {
          let fields: { actor?: unknown; reason?: unknown } = {};
          if (body.length > 0) {
            try {
              const parsed: unknown = JSON.parse(body.toString("utf8"));
              if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
              fields = parsed;
            } catch {
              return sendJson(res, 400, { error: 'body must be empty or a JSON object like {"actor":"deployer","reason":"v2 rollout"}' });
            }
          }
          if ((fields.actor !== undefined && typeof fields.actor !== "string") || (fields.reason !== undefined && typeof fields.reason !== "string")) {
            return sendJson(res, 400, { error: "actor and reason must be strings" });
          }
          const remote = req.socket.remoteAddress ?? "unknown";
          // `actor` and `reason` are what the caller says; `auth` and `remote_address` are what
          // this server established.
          const actor = typeof fields.actor === "string" && fields.actor !== "" ? fields.actor.slice(0, 200) : `http:${remote}`;
          const wait = queryFlag(req.url, "wait");
          if (wait === "invalid") return sendJson(res, 400, { error: "wait must be true or false" });
          pool.beginDrain({
            actor,
            auth: how,
            fields: { ...options.drainFields, remote_address: remote },
            ...(typeof fields.reason === "string" ? { reason: fields.reason.slice(0, 500) } : {}),
          });
          if (wait !== true) return sendJson(res, 202, { draining: true, state: pool.state, active_sessions: pool.activeSessions });
          // `?wait=true` answers once no call is live (a Kubernetes preStop hook that blocks, so
          // the SIGTERM after it finds nothing live). `drained` also resolves when the pool
          // closes. A caller that gives up simply disconnects; the drain goes on.
          await pool.drained;
          sendJson(res, 200, { draining: true, drained: true, state: pool.state, active_sessions: pool.activeSessions });
        }, false),
      },
    },
  };

  for (const m of mounts) {
    if (typeof m?.path !== "string" || !/^\/[^?#\s]*[^/?#\s]$/.test(m.path)) throw new TypeError(`createControlServer: a mount path must start with / and not end with one, e.g. "/deploy"; got ${JSON.stringify(m?.path)}`);
    const clash = Object.keys(routes).find((r) => r === m.path || r.startsWith(`${m.path}/`)) ?? mounts.find((o) => o !== m && (o.path === m.path || o.path.startsWith(`${m.path}/`)))?.path;
    if (clash !== undefined) throw new TypeError(`createControlServer: mount ${m.path} would hide ${clash}`);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      pool.logger.error({ err: describeError(error), path: String(req.url).slice(0, 200) }, "control server handler failed");
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A draining worker is on its way out: no probe or scraper keeps a connection to it, so the
    // next request opens a fresh one (to whatever answers then) instead of a dying keep-alive.
    if (pool.draining || pool.state === "closed") res.setHeader("Connection", "close");
    const path = pathOf(req.url);
    const mount = path === undefined ? undefined : mountFor(path);
    if (mount !== undefined) {
      discardBody(req);
      return guarded((rq, rs) => {
        if (!mount.handle(rq, rs)) sendJson(rs, 404, { error: `no such endpoint: ${String(path).slice(0, 100)}` });
      }, true)(req, res, EMPTY_BODY);
    }
    const route = path === undefined ? undefined : routes[path];
    if (route === undefined) {
      discardBody(req);
      return sendJson(res, 404, { error: `no such endpoint: ${String(path ?? req.url).slice(0, 100)}` });
    }
    const method = req.method === "HEAD" ? "GET" : (req.method ?? "");
    const handler = route.methods[method];
    if (handler === undefined) {
      discardBody(req);
      res.setHeader("Allow", [...Object.keys(route.methods), ...("GET" in route.methods ? ["HEAD"] : [])].join(", "));
      return sendJson(res, 405, { error: `method ${req.method ?? ""} not allowed on ${path}` });
    }
    const body = await readBody(req, maxBody);
    if (body === "too_large") {
      res.setHeader("Connection", "close");
      return sendJson(res, 413, { error: `request body larger than ${maxBody} bytes` });
    }
    await handler(req, res, body);
  }

  // Malformed HTTP (bad request line, oversized headers) never reaches a handler; answer 400.
  server.on("clientError", (_error, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 64;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.unref();
  const address = server.address() as AddressInfo;
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${urlHost}:${address.port}`,
    server,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** A boolean query parameter: undefined when absent, "invalid" when not true/false/1/0/empty. */
function queryFlag(url: string | undefined, name: string): boolean | undefined | "invalid" {
  const q = url?.indexOf("?") ?? -1;
  if (url === undefined || q === -1) return undefined;
  const value = new URLSearchParams(url.slice(q + 1)).get(name);
  if (value === null) return undefined;
  if (value === "" || value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  return "invalid";
}

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined || !url.startsWith("/")) return undefined;
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

type AuthMethod = "token" | "loopback" | "public";

interface AuthPolicy {
  readonly tokenDigest: Buffer | undefined;
  readonly trustLoopback: boolean;
}

type AuthDecision = { ok: true; how: "token" | "loopback" } | { ok: false; status: 401 | 403; message: string };

/** Whether the server's own bind address is loopback (so only this host can reach it at all). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || h === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h.startsWith("::ffff:127.");
}

/**
 * The peer addresses a local caller connects from. Deliberately not all of 127/8: a sidecar proxy
 * (Istio forwards inbound traffic from 127.0.0.6) makes every remote caller look local.
 */
function isTrustedLoopbackPeer(address: string | undefined): boolean {
  return address === "127.0.0.1" || address === "::1" || address === "::ffff:127.0.0.1";
}

// A request that passed through a proxy on this host is not a local caller, whatever its peer.
const PROXY_HEADERS = ["forwarded", "via", "x-real-ip", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-envoy-external-address", "x-envoy-attempt-count", "x-forwarded-client-cert"];

const LOOPBACK_HOST_RE = /^(?:localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(?::\d{1,5})?$/i;

/** Whether a `Host` header names this host by a loopback name (a rebound DNS name does not). */
export function isLoopbackHostHeader(value: string | undefined): boolean {
  return value !== undefined && LOOPBACK_HOST_RE.test(value);
}
const LOOPBACK_ORIGIN_RE = /^https?:\/\/(?:localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(?::\d{1,5})?$/i;

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/**
 * Who may drain (and read sessions and the manifest). In order:
 * 1. a request that presents `Authorization` is judged by it alone: the right bearer token →
 *    `token`; anything else → 403 (a wrong token never falls back to loopback trust);
 * 2. with `trustLoopback`, a request from 127.0.0.1/::1 with no proxy headers, a loopback `Host`
 *    and no cross-site `Origin`/`Sec-Fetch-Site` → `loopback`; one that fails those checks → 403;
 * 3. otherwise 401 (a token is configured) or 403 (none is: nothing can authorise the caller).
 */
function authorize(req: IncomingMessage, policy: AuthPolicy): AuthDecision {
  const authorization = header(req, "authorization");
  if (authorization !== undefined) {
    if (policy.tokenDigest === undefined) return { ok: false, status: 403, message: "a token was presented but this worker has no drainToken configured" };
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    // Comparing digests keeps the comparison constant-time whatever the presented length.
    if (match?.[1] !== undefined && timingSafeEqual(digest(match[1]), policy.tokenDigest)) return { ok: true, how: "token" };
    return { ok: false, status: 403, message: "token rejected" };
  }
  if (policy.trustLoopback && isTrustedLoopbackPeer(req.socket.remoteAddress)) {
    if (PROXY_HEADERS.some((name) => req.headers[name] !== undefined)) {
      return { ok: false, status: 403, message: "a proxied request is not a local caller: present Authorization: Bearer <drain token>" };
    }
    const hostHeader = header(req, "host");
    if (!isLoopbackHostHeader(hostHeader)) {
      return { ok: false, status: 403, message: "a request trusted as local must name a loopback Host (localhost, 127.0.0.1 or [::1])" };
    }
    const origin = header(req, "origin");
    if (origin !== undefined && !LOOPBACK_ORIGIN_RE.test(origin)) {
      return { ok: false, status: 403, message: "cross-origin request refused" };
    }
    const site = header(req, "sec-fetch-site");
    if (site !== undefined && site !== "same-origin" && site !== "none") {
      return { ok: false, status: 403, message: "cross-site request refused" };
    }
    return { ok: true, how: "loopback" };
  }
  return policy.tokenDigest === undefined
    ? { ok: false, status: 403, message: "this endpoint needs a drain token and none is configured (createControlServer({ drainToken }))" }
    : { ok: false, status: 401, message: "this endpoint needs Authorization: Bearer <drain token>" };
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer | "too_large"> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > max) {
    discardBody(req);
    return Promise.resolve("too_large");
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > max) {
        done = true;
        resolve("too_large");
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!done) resolve(Buffer.concat(chunks));
    });
    req.on("error", reject);
  });
}

/** Discards an unread body so the connection stays usable. */
function discardBody(req: IncomingMessage): void {
  req.resume();
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status;
  res.setHeader("Content-Type", type);
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.setHeader("Cache-Control", "no-store");
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON_TYPE, `${JSON.stringify(value)}\n`);
}
