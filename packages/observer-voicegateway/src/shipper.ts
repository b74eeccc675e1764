/**
 * Ships JSON rows to an HTTP endpoint in batches, off the call's path.
 *
 * `push` is synchronous and never throws: it appends to a bounded buffer and returns. A single
 * sender loop drains the buffer in batches of `batchSize` with a request timeout; a failed batch
 * is retried with exponential backoff and full jitter, then put back at the head of the buffer so
 * a collector outage costs memory (bounded by `maxBuffer`, oldest rows dropped first and counted),
 * not data, until it is full. 429 honours `Retry-After` (clamped); 413 halves the batch; other
 * 4xx answers mean the rows themselves are refused, so they are dropped (counted) rather than
 * retried forever. Problems are logged once per kind, not per batch.
 */
import type { Logger } from "@openrtc/core";

export interface ShipperOptions {
  batchSize?: number;
  flushIntervalMs?: number;
  maxBuffer?: number;
  maxRetries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  requestTimeoutMs?: number;
  maxRetryAfterMs?: number;
  /** Random source for jitter (seedable in tests). */
  random?: () => number;
  fetch?: typeof fetch;
  logger?: Logger;
  headers?: Record<string, string>;
  /** Called with each outcome, e.g. to count OTel metrics. */
  onEvent?: (event: ShipperEvent) => void;
}

export type ShipperEvent =
  | { type: "sent"; rows: number }
  | { type: "dropped"; rows: number; reason: "buffer_full" | "rejected" }
  | { type: "retry"; rows: number; reason: string };

export interface ShipperStats {
  readonly url: string;
  readonly pending: number;
  readonly sent: number;
  readonly dropped: number;
  readonly rejected: number;
  readonly retries: number;
  readonly batches: number;
  readonly lastError: string | null;
}

export const SHIPPER_DEFAULTS = {
  batchSize: 20,
  flushIntervalMs: 2000,
  maxBuffer: 5000,
  maxRetries: 3,
  backoffMs: 200,
  maxBackoffMs: 10_000,
  requestTimeoutMs: 10_000,
  maxRetryAfterMs: 60_000,
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

class BatchTooLarge extends Error {}
class Refused extends Error {}
class RetryAfter extends Error {
  constructor(readonly ms: number) {
    super(`HTTP 429 (retry after ${ms} ms)`);
  }
}

export class HttpBatchShipper<T = unknown> {
  readonly url: string;
  private readonly o: Required<Omit<ShipperOptions, "logger" | "headers" | "onEvent" | "fetch" | "random">> & { random: () => number };
  private readonly logger: Logger | undefined;
  private readonly headers: Record<string, string>;
  private readonly onEvent: ((event: ShipperEvent) => void) | undefined;
  private readonly fetchImpl: typeof fetch;
  private buffer: T[] = [];
  /** Rows of the batch being sent (not in `buffer`, not yet delivered). */
  private inFlight = 0;
  private sending: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly logged = new Set<string>();
  private stats_ = { sent: 0, dropped: 0, rejected: 0, retries: 0, batches: 0, lastError: null as string | null };
  /** Set while the endpoint is failing: the loop waits for the next interval instead of spinning. */
  private pausedUntil = 0;

  constructor(url: string, options: ShipperOptions = {}) {
    new URL(url); // throws TypeError on a malformed URL: a configuration error, at startup
    this.url = url;
    const o = { ...SHIPPER_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as typeof SHIPPER_DEFAULTS;
    for (const [k, v] of Object.entries(SHIPPER_DEFAULTS)) {
      const value = (o as Record<string, number>)[k];
      if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value) || (k === "batchSize" && value < 1) || (k === "maxBuffer" && value < 1)) {
        throw new RangeError(`shipper option ${k} must be a finite number${k === "batchSize" || k === "maxBuffer" ? " ≥ 1" : " ≥ 0"} (default ${v})`);
      }
    }
    this.o = { ...o, random: options.random ?? Math.random };
    this.logger = options.logger;
    this.headers = { "content-type": "application/json", ...options.headers };
    this.onEvent = options.onEvent;
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Rows not yet delivered: buffered plus the batch in flight. */
  get pending(): number {
    return this.buffer.length + this.inFlight;
  }

  stats(): ShipperStats {
    return { url: this.url, pending: this.pending, ...this.stats_ };
  }

  /** Queues rows; never throws, never waits. Returns how many were dropped to make room. */
  push(rows: readonly T[]): number {
    try {
      if (rows.length === 0) return 0;
      if (this.closed) {
        this.drop(rows.length, "buffer_full", "shipper is closed; rows dropped");
        return rows.length;
      }
      this.buffer.push(...rows);
      let dropped = 0;
      if (this.buffer.length > this.o.maxBuffer) {
        dropped = this.buffer.length - this.o.maxBuffer;
        this.buffer.splice(0, dropped);
        this.drop(dropped, "buffer_full", `buffer full (${this.o.maxBuffer} rows): dropping the oldest rows`);
      }
      this.ensureTimer();
      if (this.buffer.length >= this.o.batchSize) setImmediate(() => this.kick());
      return dropped;
    } catch {
      return 0;
    }
  }

  /** Sends what is buffered; resolves when empty, or after `timeoutMs` with rows still pending. */
  async flush(timeoutMs = 5000): Promise<ShipperStats> {
    const deadline = Date.now() + timeoutMs;
    this.pausedUntil = 0;
    while (this.buffer.length > 0 || this.sending !== undefined) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      this.kick();
      await Promise.race([this.sending ?? Promise.resolve(), sleep(Math.min(remaining, 50))]);
      if (this.buffer.length > 0 && this.sending === undefined && Date.now() < this.pausedUntil) await sleep(Math.min(remaining, Math.max(1, this.pausedUntil - Date.now())));
    }
    return this.stats();
  }

  /** Stops the timer and flushes within `timeoutMs`; later pushes are dropped and counted. */
  async close(timeoutMs = 5000): Promise<ShipperStats> {
    const stats = await this.flush(timeoutMs);
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    return stats;
  }

  private ensureTimer(): void {
    if (this.timer !== undefined || this.closed || this.o.flushIntervalMs === 0) return;
    this.timer = setInterval(() => this.kick(), this.o.flushIntervalMs);
    this.timer.unref();
  }

  private kick(): void {
    if (this.sending !== undefined || this.buffer.length === 0 || Date.now() < this.pausedUntil) return;
    this.sending = this.drain().finally(() => {
      this.sending = undefined;
    });
  }

  private async drain(): Promise<void> {
    let size = this.o.batchSize;
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, size);
      this.inFlight = batch.length;
      const outcome = await this.sendWithRetries(batch).finally(() => {
        this.inFlight = 0;
      });
      if (outcome === "ok") {
        size = this.o.batchSize;
        continue;
      }
      if (outcome === "too_large") {
        if (batch.length === 1) {
          this.reject(1, "the collector refuses even a single row as too large (HTTP 413)");
          continue;
        }
        size = Math.max(1, Math.floor(batch.length / 2));
        this.buffer.unshift(...batch);
        continue;
      }
      if (outcome === "refused") continue;
      // Endpoint down: keep the rows (bounded), try again at the next interval.
      this.buffer.unshift(...batch);
      if (this.buffer.length > this.o.maxBuffer) {
        const over = this.buffer.length - this.o.maxBuffer;
        this.buffer.splice(0, over);
        this.drop(over, "buffer_full", `buffer full (${this.o.maxBuffer} rows) while the collector is unreachable: dropping the oldest rows`);
      }
      this.pausedUntil = Date.now() + Math.max(this.o.flushIntervalMs, this.o.backoffMs);
      return;
    }
  }

  private async sendWithRetries(batch: T[]): Promise<"ok" | "too_large" | "refused" | "failed"> {
    let attempt = 0;
    let throttled = 0;
    for (;;) {
      try {
        await this.post(batch);
        this.stats_.sent += batch.length;
        this.stats_.batches++;
        this.onEvent?.({ type: "sent", rows: batch.length });
        return "ok";
      } catch (error) {
        if (error instanceof BatchTooLarge) return "too_large";
        if (error instanceof Refused) {
          this.reject(batch.length, error.message);
          return "refused";
        }
        const message = error instanceof Error ? error.message : String(error);
        this.stats_.lastError = message;
        if (error instanceof RetryAfter && throttled < 10 && !this.closed) {
          // Backpressure, not failure: wait as told, without spending a retry.
          throttled++;
          this.stats_.retries++;
          this.onEvent?.({ type: "retry", rows: batch.length, reason: "throttled" });
          await sleep(error.ms);
          continue;
        }
        if (attempt >= this.o.maxRetries) {
          this.warnOnce(`down:${message}`, { url: this.url, rows: batch.length, attempts: attempt + 1, err: message }, "collector unreachable; keeping rows buffered and retrying later");
          return "failed";
        }
        this.stats_.retries++;
        this.onEvent?.({ type: "retry", rows: batch.length, reason: message });
        const cap = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** attempt);
        await sleep(this.o.random() * cap);
        attempt++;
      }
    }
  }

  private async post(batch: T[]): Promise<void> {
    let response: Response;
    try {
      response = await this.fetchImpl(this.url, {
        method: "POST",
        headers: this.headers,
        body: JSON.stringify(batch),
        signal: AbortSignal.timeout(this.o.requestTimeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      throw new Error(error instanceof Error && error.name === "TimeoutError" ? `no answer within ${this.o.requestTimeoutMs} ms` : `${error instanceof Error ? error.message : String(error)}${cause ? ` (${cause})` : ""}`);
    }
    // Read the body so the connection is reused (and its bytes are not left on the socket).
    const text = await response.text().catch(() => "");
    if (response.ok) return;
    if (response.status === 429) {
      const header = response.headers.get("retry-after");
      const seconds = header !== null && /^\d+$/.test(header.trim()) ? Number(header.trim()) : Number.NaN;
      throw new RetryAfter(Number.isFinite(seconds) ? Math.min(seconds * 1000, this.o.maxRetryAfterMs) : this.o.backoffMs);
    }
    if (response.status === 413) throw new BatchTooLarge();
    if (response.status >= 400 && response.status < 500 && response.status !== 408) throw new Refused(`collector refused the rows: HTTP ${response.status} ${text.slice(0, 200)}`);
    throw new Error(`HTTP ${response.status}`);
  }

  private reject(rows: number, message: string): void {
    this.stats_.rejected += rows;
    this.stats_.lastError = message;
    this.onEvent?.({ type: "dropped", rows, reason: "rejected" });
    this.warnOnce(`refused:${message.slice(0, 40)}`, { url: this.url, rows }, message);
  }

  private drop(rows: number, reason: "buffer_full", message: string): void {
    this.stats_.dropped += rows;
    this.onEvent?.({ type: "dropped", rows, reason });
    this.warnOnce(reason, { url: this.url, rows }, message);
  }

  private warnOnce(key: string, fields: object, message: string): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    try {
      this.logger?.warn(fields, `observer-voicegateway: ${message}`);
    } catch {
      // A broken logger must not reach the caller either.
    }
  }
}
