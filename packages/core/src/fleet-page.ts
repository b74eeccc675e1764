// The deploy page: `openrtc fleet` in a browser. One poll loop (one FleetTracker, judged exactly
// as `fleet status` judges) feeds every viewer, so a room full of open tabs costs the fleet one
// read per interval. Serves the page, `state.json` (the `fleet status --json` report plus the
// live-calls series and the audit trail), and live updates as Server-Sent Events, with
// `view.json` for browsers that fall back to polling.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isLoopbackHost, isLoopbackHostHeader } from "./control-server.ts";
import { FleetTracker, fleetReportJSON, judgeFleet, type FleetReport } from "./fleet.ts";
import type { FleetSource } from "./fleet-sources.ts";
import { auditTrailReader, type AuditTrail, type AuditTrailReader } from "./fleet-page-audit.ts";
import { CONTENT_SECURITY_POLICY, renderFragments, renderPage, type PageModel } from "./fleet-page-html.ts";

export interface DeployPageOptions {
  source: FleetSource;
  /** The version the deploy goes to; default: the one version accepting calls (as `fleet status`). */
  target?: string;
  /** Time between reads of the fleet. Default 2000 ms. */
  intervalMs?: number;
  /** Also count a drain older than this with calls live as stuck (`--drain-timeout`). */
  drainTimeoutSeconds?: number;
  /** Polls a once-seen worker must miss to count as gone. Default 2. */
  goneAfter?: number;
  /** The audit log to show: a file (with its rotated siblings), a directory holding one log, or `s3://BUCKET/PREFIX`. */
  audit?: string;
  /** Time between reads of the audit log. Default: `intervalMs` for files (re-read only when they changed), 30 s for S3. */
  auditIntervalMs?: number;
  /** Audit records shown. Default 50. */
  auditRecords?: number;
  /** Samples of live calls per version kept for the chart (one per poll). Default 720. */
  samples?: number;
  /** Where the page is mounted: "" (the root) or a prefix such as "/deploy". Default "". */
  path?: string;
  /** Live viewers (event streams) at once; more get 503 and poll. Default 64. */
  maxViewers?: number;
  /** What the page says when no audit log is given. Default: the CLI's flag. */
  auditHint?: string;
  /** Unix seconds. */
  clock?: () => number;
}

/** One poll's live calls, per version (`(untagged)` for workers without one). */
export interface LiveCallsSample {
  timestamp: number;
  live_calls: Record<string, number>;
}

export interface DeployPage {
  /** The mount prefix ("" or e.g. "/deploy"): a `ControlServerMount`. */
  readonly path: string;
  /** Resolves once the fleet (and the audit log, when given) has been read once. */
  readonly ready: Promise<void>;
  /** Answers a request under `path` and returns true; returns false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** What `GET state.json` answers. */
  state(): Record<string, unknown>;
  /** Stops polling and ends every event stream. */
  close(): void;
}

/** A fixed-size buffer that keeps the newest `capacity` items. */
export class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`RingBuffer: capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    this.items[(this.start + this.count) % this.capacity] = item;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
  }

  last(): T | undefined {
    return this.count === 0 ? undefined : this.items[(this.start + this.count - 1) % this.capacity];
  }

  toArray(): T[] {
    return Array.from({ length: this.count }, (_, i) => this.items[(this.start + i) % this.capacity] as T);
  }
}

const label = (v: string | null): string => v ?? "(untagged)";
/** Credentials in a URL (`http://user:pass@prometheus`) never reach the page. */
const redact = (text: string): string => text.replace(/\/\/[^/\s@]*@/g, "//");
const SECURITY_HEADERS = { "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer" };
// A viewer this far behind on its stream is not reading it: drop it rather than buffer for it.
const MAX_VIEWER_BACKLOG_BYTES = 4 << 20;

function normalizePath(path: string | undefined): string {
  const p = path ?? "";
  if (p === "" || p === "/") return "";
  if (!/^\/[^?#\s]*[^/?#\s]$/.test(p)) throw new TypeError(`createDeployPage: path must be "" or start with / and not end with one, e.g. "/deploy"; got ${JSON.stringify(p)}`);
  return p;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`createDeployPage: ${name} must be a positive number, got ${String(value)}`);
  return v;
}

export function createDeployPage(options: DeployPageOptions): DeployPage {
  if (options?.source === undefined || typeof options.source.read !== "function") throw new TypeError("createDeployPage: source is required (directSource(...) or prometheusSource(...))");
  const prefix = normalizePath(options.path);
  const intervalMs = positive("intervalMs", options.intervalMs, 2000);
  const capacity = Math.floor(positive("samples", options.samples, 720));
  const maxViewers = Math.floor(positive("maxViewers", options.maxViewers, 64));
  const clock = options.clock ?? (() => Date.now() / 1000);
  const source = options.source;
  const description = redact(source.description);
  const tracker = new FleetTracker(options.goneAfter === undefined ? {} : { goneAfter: options.goneAfter });
  const judge = (now: number): FleetReport =>
    judgeFleet(tracker.list(), {
      now,
      ...(options.target === undefined ? {} : { target: options.target }),
      ...(options.drainTimeoutSeconds === undefined ? {} : { drainTimeoutSeconds: options.drainTimeoutSeconds }),
    });
  const reader: AuditTrailReader | undefined = options.audit === undefined ? undefined : auditTrailReader(options.audit, { clock, ...(options.auditRecords === undefined ? {} : { keep: options.auditRecords }) });
  const auditIntervalMs = positive("auditIntervalMs", options.auditIntervalMs, options.audit?.startsWith("s3://") === true ? Math.max(intervalMs, 30_000) : intervalMs);

  let report = judge(clock());
  let polledAt: number | null = null;
  let sourceError: string | null = null;
  let audit: AuditTrail | "pending" | null = reader === undefined ? null : "pending";
  const samples = new RingBuffer<LiveCallsSample>(capacity);
  const viewers = new Set<ServerResponse>();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;
  let eventId = 0;

  const model = (): PageModel => ({ report, polledAt, source: description, sourceError, audit, auditHint: options.auditHint ?? "--audit FILE|DIR|s3://BUCKET/PREFIX" });
  const links = { events: `${prefix}/events`, view: `${prefix}/view.json`, intervalMs, capacity };

  function broadcast(sample: LiveCallsSample | undefined): void {
    if (viewers.size === 0) return;
    const frame = sseFrame("view", { html: renderFragments(model()), ...(sample === undefined ? {} : { sample }) }, ++eventId);
    for (const res of viewers) {
      if (res.writableLength > MAX_VIEWER_BACKLOG_BYTES) {
        viewers.delete(res);
        res.destroy();
      } else res.write(frame);
    }
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      // The page never keeps a process alive: a worker exits when its pool closes, the CLI on a signal.
      t.unref();
      timers.add(t);
    });

  async function pollFleet(): Promise<void> {
    try {
      const readings = await source.read();
      const now = clock();
      tracker.update(readings, now);
      report = judge(now);
      polledAt = now;
      sourceError = null;
      const sample = { timestamp: now, live_calls: Object.fromEntries(report.versions.map((v) => [label(v.version), v.liveCalls])) };
      samples.push(sample);
      if (!closed) broadcast(sample);
    } catch (error) {
      sourceError = `could not read ${description}: ${redact(error instanceof Error ? error.message : String(error))}`;
      if (!closed) broadcast(undefined);
    }
  }

  async function readAudit(): Promise<void> {
    if (reader === undefined) return;
    audit = await reader.read();
    if (!closed) broadcast(undefined);
  }

  async function loop(step: () => Promise<void>, every: number, first: () => void): Promise<void> {
    await step();
    first();
    while (!closed) {
      await sleep(every);
      if (!closed) await step();
    }
  }

  let fleetReady!: () => void;
  let auditReady!: () => void;
  const ready = Promise.all([new Promise<void>((r) => (fleetReady = r)), new Promise<void>((r) => (auditReady = r))]).then(() => undefined);
  void loop(pollFleet, intervalMs, fleetReady);
  if (reader === undefined) auditReady();
  else void loop(readAudit, auditIntervalMs, auditReady);

  function state(): Record<string, unknown> {
    return {
      ...fleetReportJSON(report),
      source: description,
      polled_at: polledAt,
      source_error: sourceError,
      interval_ms: intervalMs,
      series: { capacity, samples: samples.toArray() },
      audit: audit === null || audit === "pending" ? audit : auditJSON(audit),
    };
  }

  function openEvents(req: IncomingMessage, res: ServerResponse): void {
    if (viewers.size >= maxViewers) {
      res.setHeader("Retry-After", "10");
      return sendJson(res, 503, { error: `${maxViewers} live viewers already; the page falls back to polling ${links.view}` });
    }
    res.writeHead(200, { ...SECURITY_HEADERS, "Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no" });
    if (req.method === "HEAD") return void res.end();
    // A stream dropped by a proxy is retried after this long.
    res.write(`retry: ${Math.max(1000, Math.min(intervalMs, 10_000))}\n\n`);
    res.write(sseFrame("view", { html: renderFragments(model()), series: samples.toArray() }, eventId));
    viewers.add(res);
    res.on("close", () => viewers.delete(res));
  }

  function handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    if (prefix !== "" && path !== prefix && !path.startsWith(`${prefix}/`)) return false;
    const rest = path.slice(prefix.length);
    const known = rest === "" || rest === "/" || rest === "/state.json" || rest === "/view.json" || rest === "/events";
    if (!known) {
      sendJson(res, 404, { error: `no such page: ${path.slice(0, 100)} (the deploy page is ${prefix || "/"}, its data ${prefix}/state.json)` });
      return true;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      sendJson(res, 405, { error: `method ${String(req.method).slice(0, 20)} not allowed on ${path.slice(0, 100)}` });
      return true;
    }
    if (closed) {
      sendJson(res, 503, { error: "the deploy page is closed" });
      return true;
    }
    if (rest === "/state.json") sendJson(res, 200, state());
    else if (rest === "/view.json") sendJson(res, 200, { html: renderFragments(model()), series: samples.toArray() });
    else if (rest === "/events") openEvents(req, res);
    else send(res, 200, "text/html; charset=utf-8", renderPage(model(), links), { "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY" });
    return true;
  }

  return {
    path: prefix,
    ready,
    handle,
    state,
    close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const res of viewers) res.end();
      viewers.clear();
    },
  };
}

function auditJSON(a: AuditTrail): Record<string, unknown> {
  return { source: a.source, read_at: a.readAt, records_total: a.records, verify: a.verify, error: a.error, note: a.note, records: a.latest };
}

/** One Server-Sent Events message: JSON has no raw newlines, so `data` is one line. */
export function sseFrame(event: string, data: unknown, id: number): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, ...headers, "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, "application/json; charset=utf-8", `${JSON.stringify(value)}\n`);
}

export interface ServedDeployPage {
  readonly url: string;
  readonly server: Server;
  /** Closes the server and every connection (the page itself stays open: close it too). */
  close(): Promise<void>;
}

/**
 * Serves a page on its own HTTP server (what `openrtc fleet serve` runs). Bound to loopback, it
 * answers only requests naming a loopback `Host`, so a web page in the same browser cannot read
 * it through a rebound DNS name.
 */
export async function listenDeployPage(page: DeployPage, options: { host?: string; port?: number } = {}): Promise<ServedDeployPage> {
  const host = options.host ?? "127.0.0.1";
  const loopback = isLoopbackHost(host);
  const server = createServer((req, res) => {
    if (loopback && !isLoopbackHostHeader(req.headers.host)) return sendJson(res, 403, { error: "this page is served on loopback: open it as localhost or 127.0.0.1" });
    if (!page.handle(req, res)) sendJson(res, 404, { error: `no such page: ${String(req.url).slice(0, 100)}; the deploy page is at ${page.path || "/"}` });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.on("clientError", (_error, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${urlHost}:${address.port}${page.path}`,
    server,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
