/**
 * A small in-process collector (node:http), for a coordinator that must see calls from job
 * processes it does not share memory with (the demo), and as the ingest-format check in tests.
 *
 * It speaks voicegateway's ingest endpoints as voicegateway does (`POST /v1/ingest`,
 * `POST /v1/ingest/turns`: bearer auth, JSON arrays, `max_batch_size` → 413, duplicate ids
 * counted not stored, malformed rows skipped not the batch) and keeps what it received for
 * inspection; and it has OpenRTC's own endpoints, which keep the buckets `compare` reads:
 *   POST /v1/openrtc/calls           JSON array of call records (deduplicated by job id)
 *   GET  /v1/openrtc/buckets         the store's export (?version=&tenant=&agent=)
 *   GET  /v1/openrtc/compare         ?base=&candidate=[&confidence=…] → compare's result
 *   GET  /health
 * It is not voicegateway: it does not rate, persist or serve dashboards.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isCallRecord } from "./call.ts";
import { compare, CompareOptionsError, type CompareOptions } from "./compare.ts";
import { CALLS_PATH } from "./observer.ts";
import { InMemoryStore } from "./store.ts";
import { validateRequestRecord, validateTurnRow, type VoiceGatewayRequestRecord, type VoiceGatewayTurnRow } from "./voicegateway.ts";

export interface CollectorServerOptions {
  store?: InMemoryStore;
  /** Bearer token required on POSTs (voicegateway's ingest key). Unset: no auth. */
  apiKey?: string;
  /** voicegateway's `ingest.max_batch_size`. Default 1000. */
  maxBatchSize?: number;
  maxBodyBytes?: number;
  /** Rows kept for inspection (oldest dropped). Default 100,000. */
  keepRows?: number;
  host?: string;
  port?: number;
  /** Fault injection for tests: answer instead of handling (return undefined to handle). */
  intercept?: (req: IncomingMessage) => Promise<{ status: number; body?: unknown; headers?: Record<string, string> } | undefined> | { status: number; body?: unknown; headers?: Record<string, string> } | undefined;
}

export interface CollectorServer {
  readonly url: string;
  readonly store: InMemoryStore;
  readonly requests: readonly VoiceGatewayRequestRecord[];
  readonly turns: readonly VoiceGatewayTurnRow[];
  /** Every POST seen: path, auth header, rows, answer status (for format assertions). */
  readonly log: readonly { path: string; authorization: string | undefined; rows: number; status: number }[];
  readonly server: Server;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > limit) throw new HttpError(413, `body over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(422, "body is not JSON");
  }
}

function numberParam(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new HttpError(400, `${name} must be a number`);
  return n;
}

export async function createCollectorServer(options: CollectorServerOptions = {}): Promise<CollectorServer> {
  const store = options.store ?? new InMemoryStore();
  const maxBatch = options.maxBatchSize ?? 1000;
  const maxBody = options.maxBodyBytes ?? 10 * 1024 * 1024;
  const keep = options.keepRows ?? 100_000;
  const requests: VoiceGatewayRequestRecord[] = [];
  const turns: VoiceGatewayTurnRow[] = [];
  const log: { path: string; authorization: string | undefined; rows: number; status: number }[] = [];
  const requestIds = new Set<string>();
  const jobIds = new Set<string>();
  const trim = <T>(rows: T[]): void => {
    if (rows.length > keep) rows.splice(0, rows.length - keep);
  };

  const authorize = (req: IncomingMessage): void => {
    if (options.apiKey === undefined) return;
    if (req.headers.authorization !== `Bearer ${options.apiKey}`) throw new HttpError(401, "missing or wrong bearer token");
  };
  const batch = async (req: IncomingMessage): Promise<unknown[]> => {
    authorize(req);
    const body = await readJson(req, maxBody);
    // voicegateway's handler is typed `list[dict]`: FastAPI answers anything else with 422.
    if (!Array.isArray(body)) throw new HttpError(422, "body must be a JSON array");
    if (body.length > maxBatch) throw new HttpError(413, `batch too large: ${body.length} records exceeds max ${maxBatch}`);
    return body;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://collector");
    const intercepted = await options.intercept?.(req);
    if (intercepted !== undefined) {
      req.resume();
      send(res, intercepted.status, intercepted.body ?? {}, intercepted.headers);
      return;
    }
    if (req.method === "GET" && url.pathname === "/health") return send(res, 200, { status: "ok" });
    if (req.method === "POST" && url.pathname === "/v1/ingest") {
      const rows = await batch(req);
      let accepted = 0;
      let duplicates = 0;
      let rejected = 0;
      for (const row of rows) {
        if (validateRequestRecord(row) !== null) {
          rejected++;
          continue;
        }
        const r = row as VoiceGatewayRequestRecord;
        if (requestIds.has(r.id)) {
          duplicates++;
          continue;
        }
        requestIds.add(r.id);
        requests.push(r);
        accepted++;
      }
      trim(requests);
      log.push({ path: url.pathname, authorization: req.headers.authorization, rows: rows.length, status: 200 });
      return send(res, 200, { accepted, duplicates, ...(rejected > 0 ? { rejected } : {}) });
    }
    if (req.method === "POST" && url.pathname === "/v1/ingest/turns") {
      const rows = await batch(req);
      let accepted = 0;
      for (const row of rows) {
        if (validateTurnRow(row) !== null) continue;
        turns.push(row as VoiceGatewayTurnRow);
        accepted++;
      }
      trim(turns);
      log.push({ path: url.pathname, authorization: req.headers.authorization, rows: rows.length, status: 200 });
      return send(res, 200, { accepted });
    }
    if (req.method === "POST" && url.pathname === CALLS_PATH) {
      const rows = await batch(req);
      let accepted = 0;
      let duplicates = 0;
      let rejected = 0;
      for (const row of rows) {
        if (!isCallRecord(row)) {
          rejected++;
          continue;
        }
        if (jobIds.has(row.jobId)) {
          duplicates++;
          continue;
        }
        jobIds.add(row.jobId);
        store.record(row);
        accepted++;
      }
      log.push({ path: url.pathname, authorization: req.headers.authorization, rows: rows.length, status: 200 });
      return send(res, 200, { accepted, duplicates, rejected });
    }
    if (req.method === "GET" && url.pathname === "/v1/openrtc/buckets") {
      authorize(req);
      const filter = Object.fromEntries(["version", "tenant", "agent"].map((k) => [k, url.searchParams.get(k) ?? undefined]).filter(([, v]) => v !== undefined));
      return send(res, 200, store.toExport(filter));
    }
    if (req.method === "GET" && url.pathname === "/v1/openrtc/compare") {
      authorize(req);
      const base = url.searchParams.get("base");
      const candidate = url.searchParams.get("candidate");
      if (base === null || candidate === null) throw new HttpError(400, "base and candidate are required");
      const opts: CompareOptions = { base, candidate };
      for (const k of ["confidence", "tolerance", "hardLatencyRegression", "failureRateTolerance", "minCalls", "minSamples", "outlierFactor"] as const) {
        const n = numberParam(url, k);
        if (n !== undefined) (opts as unknown as Record<string, number>)[k] = n;
      }
      for (const k of ["tenant", "agent"] as const) {
        const v = url.searchParams.get(k);
        if (v !== null) opts[k] = v;
      }
      try {
        return send(res, 200, compare(store, opts));
      } catch (error) {
        if (error instanceof CompareOptionsError) throw new HttpError(400, error.message);
        throw error;
      }
    }
    throw new HttpError(404, `no route for ${req.method} ${url.pathname}`);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (req.url?.startsWith("/v1/ingest") || req.url?.startsWith(CALLS_PATH)) log.push({ path: new URL(req.url, "http://c").pathname, authorization: req.headers.authorization, rows: 0, status });
      if (!res.headersSent) send(res, status, { detail: error instanceof Error ? error.message : String(error) }, error instanceof HttpError ? error.headers : {});
      else res.destroy();
      req.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    store,
    requests,
    turns,
    log,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
