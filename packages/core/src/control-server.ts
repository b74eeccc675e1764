import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { timingSafeEqual, createHash } from "node:crypto";
import type { AgentPool } from "./pool.ts";

export interface ControlServerOptions {
  host?: string;
  port?: number;
  /**
   * Bearer token that lets a non-loopback caller `POST /drain`. Without it only loopback
   * callers may drain. Never logged.
   */
  drainToken?: string;
  /** Largest accepted request body, in bytes. Default 4 KiB. */
  maxBodyBytes?: number;
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

/**
 * The worker's control endpoints (node:http, no framework): health for the platform, metrics
 * for Prometheus, the snapshot for `openrtc top`, and a drain trigger for coordinators.
 * Adapters (Kubernetes, systemd) reuse it.
 */
export async function createControlServer(pool: AgentPool, options: ControlServerOptions = {}): Promise<ControlServer> {
  const host = options.host ?? "127.0.0.1";
  const maxBody = options.maxBodyBytes ?? 4096;
  const tokenDigest = options.drainToken === undefined || options.drainToken === "" ? undefined : digest(options.drainToken);

  const routes: Record<string, Route> = {
    "/livez": {
      methods: {
        GET: (_req, res) => sendJson(res, pool.state === "closed" ? 503 : 200, { status: pool.state === "closed" ? "closed" : "alive", state: pool.state }),
      },
    },
    "/readyz": {
      methods: {
        GET: (_req, res) => {
          if (pool.ready) return sendJson(res, 200, { status: "ready" });
          const reason = pool.state !== "serving" ? pool.state : "not a member of the active manifest";
          sendJson(res, 503, { status: "not ready", reason });
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
      methods: { GET: (_req, res) => sendJson(res, 200, { sessions: pool.liveSessions() }) },
    },
    "/drain": {
      methods: {
        POST: (req, res, body) => {
          const denied = authorizeDrain(req, tokenDigest);
          if (denied !== undefined) return sendJson(res, denied.status, { error: denied.message });
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
          const actor = typeof fields.actor === "string" && fields.actor !== "" ? fields.actor.slice(0, 200) : `http:${req.socket.remoteAddress ?? "unknown"}`;
          pool.beginDrain({ actor, ...(typeof fields.reason === "string" ? { reason: fields.reason.slice(0, 500) } : {}) });
          sendJson(res, 202, { draining: true, state: pool.state, active_sessions: pool.activeSessions });
        },
      },
    },
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      pool.logger.error({ err: error instanceof Error ? error.message : String(error), path: req.url }, "control server handler failed");
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req.url);
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

function pathOf(url: string | undefined): string | undefined {
  if (url === undefined || !url.startsWith("/")) return undefined;
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

function authorizeDrain(req: IncomingMessage, tokenDigest: Buffer | undefined): { status: number; message: string } | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(.+)$/i.exec(header);
    // Comparing digests keeps the comparison constant-time whatever the presented length.
    if (match?.[1] !== undefined && tokenDigest !== undefined && timingSafeEqual(digest(match[1].trim()), tokenDigest)) return undefined;
    if (!isLoopback(req.socket.remoteAddress)) return { status: 403, message: "drain token rejected" };
  }
  if (isLoopback(req.socket.remoteAddress)) return undefined;
  return tokenDigest === undefined
    ? { status: 403, message: "POST /drain is only accepted from loopback (no drain token is configured)" }
    : { status: 401, message: "POST /drain from a non-loopback address needs Authorization: Bearer <drain token>" };
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
