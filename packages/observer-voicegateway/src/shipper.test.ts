import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createCollectorServer, type CollectorServer } from "./collector.ts";
import { seededRandom } from "./reservoir.ts";
import { HttpBatchShipper } from "./shipper.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const row = (i: number) => ({ id: `r${i}`, timestamp: 1.8e9, modality: "llm", model_id: "openai/gpt-4o-mini", provider: "openai" });
let collector: CollectorServer | undefined;
let raw: Server | undefined;
afterEach(async () => {
  await collector?.close();
  collector = undefined;
  if (raw) await new Promise<void>((r) => { raw!.closeAllConnections(); raw!.close(() => r()); });
  raw = undefined;
});

async function rawServer(handler: Parameters<typeof createServer>[1]): Promise<string> {
  raw = createServer(handler);
  await new Promise<void>((r) => raw!.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
}

describe("HttpBatchShipper against a real local collector", () => {
  it("batches rows, never blocks the caller, and delivers everything", async () => {
    collector = await createCollectorServer();
    const shipper = new HttpBatchShipper(`${collector.url}/v1/ingest`, { batchSize: 10, flushIntervalMs: 20, logger: quiet });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 95; i++) shipper.push([row(i)]);
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(50);
    const stats = await shipper.flush(5000);
    expect(stats).toMatchObject({ sent: 95, pending: 0, dropped: 0 });
    expect(collector.requests).toHaveLength(95);
    expect(collector.log.every((l) => l.rows <= 10)).toBe(true);
    await shipper.close();
    expect(shipper.push([row(1)])).toBe(1); // closed: dropped and counted
    expect(shipper.stats().dropped).toBe(1);
  });

  it("collector down: retries with backoff, keeps rows (bounded) and delivers once it is back", async () => {
    collector = await createCollectorServer();
    const url = collector.url;
    const port = Number(new URL(url).port);
    await collector.close();
    collector = undefined;
    const shipper = new HttpBatchShipper(`${url}/v1/ingest`, { batchSize: 5, flushIntervalMs: 30, maxRetries: 1, backoffMs: 5, maxBuffer: 12, random: seededRandom(1), logger: quiet });
    for (let i = 0; i < 20; i++) shipper.push([row(i)]);
    await shipper.flush(300);
    const down = shipper.stats();
    expect(down.sent).toBe(0);
    expect(down.pending).toBe(12);
    expect(down.dropped).toBe(8); // oldest first
    expect(down.retries).toBeGreaterThan(0);
    expect(down.lastError).toMatch(/ECONNREFUSED|fetch failed/);
    collector = await createCollectorServer({ port });
    const up = await shipper.flush(5000);
    expect(up).toMatchObject({ sent: 12, pending: 0 });
    expect(collector.requests.map((r) => r.id)).toEqual(Array.from({ length: 12 }, (_, i) => `r${i + 8}`));
  });

  it("slow collector: a request that exceeds the timeout is retried; the same ids are resent (dedup by id)", async () => {
    let calls = 0;
    collector = await createCollectorServer({ intercept: async () => (++calls === 1 ? (await new Promise((r) => setTimeout(r, 400)), undefined) : undefined) });
    const shipper = new HttpBatchShipper(`${collector.url}/v1/ingest`, { batchSize: 3, requestTimeoutMs: 100, backoffMs: 5, flushIntervalMs: 0, logger: quiet });
    shipper.push([row(1), row(2), row(3)]);
    const stats = await shipper.flush(5000);
    expect(stats.sent).toBe(3);
    expect(stats.retries).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 450));
    // the slow first attempt landed too; the collector counted the resend as duplicates
    expect(collector.requests).toHaveLength(3);
  });

  it("429 honours Retry-After without spending retries; 413 halves the batch", async () => {
    let n = 0;
    collector = await createCollectorServer({ maxBatchSize: 4, intercept: () => (++n === 1 ? { status: 429, body: { detail: "slow down" }, headers: { "retry-after": "0" } } : undefined) });
    const shipper = new HttpBatchShipper(`${collector.url}/v1/ingest`, { batchSize: 10, maxRetries: 0, flushIntervalMs: 0, logger: quiet });
    shipper.push(Array.from({ length: 10 }, (_, i) => row(i)));
    const stats = await shipper.flush(5000);
    expect(stats).toMatchObject({ sent: 10, pending: 0, rejected: 0 });
    expect(collector.log.some((l) => l.status === 413)).toBe(true);
    expect(collector.requests).toHaveLength(10);
  });

  it("401 and other refusals drop the rows (counted, logged once) instead of retrying forever", async () => {
    collector = await createCollectorServer({ apiKey: "vk_right" });
    const warnings: string[] = [];
    const shipper = new HttpBatchShipper(`${collector.url}/v1/ingest`, { batchSize: 2, flushIntervalMs: 0, headers: { authorization: "Bearer vk_wrong" }, logger: { ...quiet, warn: (_f, m) => void warnings.push(m) } });
    shipper.push([row(1), row(2), row(3), row(4)]);
    const stats = await shipper.flush(3000);
    expect(stats).toMatchObject({ sent: 0, rejected: 4, pending: 0 });
    expect(stats.lastError).toMatch(/HTTP 401/);
    expect(warnings).toHaveLength(1);
  });

  it("a single row the collector calls too large is dropped, not retried", async () => {
    const url = await rawServer((req, res) => {
      req.resume();
      res.writeHead(413).end();
    });
    const shipper = new HttpBatchShipper(url, { batchSize: 2, flushIntervalMs: 0, logger: quiet });
    shipper.push([row(1), row(2)]);
    expect(await shipper.flush(3000)).toMatchObject({ rejected: 2, pending: 0 });
  });

  it("5xx answers are retried and then kept", async () => {
    const url = await rawServer((req, res) => {
      req.resume();
      res.writeHead(503, { "content-type": "application/json" }).end('{"detail":"telemetry store temporarily unavailable"}');
    });
    const shipper = new HttpBatchShipper(url, { batchSize: 5, maxRetries: 2, backoffMs: 1, flushIntervalMs: 0, logger: quiet });
    shipper.push([row(1)]);
    const s = await shipper.flush(300);
    expect(s).toMatchObject({ sent: 0, pending: 1 });
    expect(s.retries).toBeGreaterThanOrEqual(2);
    expect(s.lastError).toBe("HTTP 503");
  });

  it("validates its options", () => {
    expect(() => new HttpBatchShipper("nope")).toThrow(TypeError);
    expect(() => new HttpBatchShipper("http://x", { batchSize: 0 })).toThrow(RangeError);
    expect(() => new HttpBatchShipper("http://x", { backoffMs: -1 })).toThrow(RangeError);
    expect(new HttpBatchShipper("http://x").push([])).toBe(0);
  });
});

describe("the in-process collector checks the ingest format", () => {
  it("answers like voicegateway: 422 for a non-array, 413 over max_batch_size, malformed rows skipped, duplicates counted", async () => {
    collector = await createCollectorServer({ maxBatchSize: 3 });
    const post = (path: string, body: string) => fetch(`${collector!.url}${path}`, { method: "POST", body, headers: { "content-type": "application/json" } });
    expect((await post("/v1/ingest", "{}")).status).toBe(422);
    expect((await post("/v1/ingest", "not json")).status).toBe(422);
    expect((await post("/v1/ingest", JSON.stringify([1, 2, 3, 4]))).status).toBe(413);
    const r = await post("/v1/ingest", JSON.stringify([row(1), { ...row(2), timestamp: "now" }, row(1)]));
    expect(await r.json()).toEqual({ accepted: 1, duplicates: 1, rejected: 1 });
    expect(await (await post("/v1/ingest/turns", JSON.stringify([{ session_id: "s", turn_index: 0, caller_speak_start_ms: 1, caller_speak_end_ms: 2 }, { session_id: "s" }]))).json()).toEqual({ accepted: 1 });
    expect(await (await post("/v1/openrtc/calls", JSON.stringify([{ v: 9 }]))).json()).toEqual({ accepted: 0, duplicates: 0, rejected: 1 });
    expect((await fetch(`${collector.url}/nope`)).status).toBe(404);
    expect((await fetch(`${collector.url}/health`)).status).toBe(200);
    expect((await fetch(`${collector.url}/v1/openrtc/compare?base=a`)).status).toBe(400);
    expect((await fetch(`${collector.url}/v1/openrtc/compare?base=a&candidate=a`)).status).toBe(400);
    expect((await fetch(`${collector.url}/v1/openrtc/compare?base=a&candidate=b&confidence=x`)).status).toBe(400);
    const cmp = (await (await fetch(`${collector.url}/v1/openrtc/compare?base=a&candidate=b&minCalls=5&tenant=t`)).json()) as { verdict: string };
    expect(cmp.verdict).toBe("insufficient_data");
  });
});
