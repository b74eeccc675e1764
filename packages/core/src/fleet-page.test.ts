// The deploy page over real pools and control servers, read with plain HTTP: what it serves,
// what it escapes, what it never shows, how it streams, and every way it can be misused.
import { createHash } from "node:crypto";
import { request, type IncomingHttpHeaders } from "node:http";
import { createServer } from "node:net";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { main } from "./cli.ts";
import { runFleet } from "./fleet-cli.ts";
import { createDeployPage, listenDeployPage, RingBuffer, sseFrame, type DeployPage, type DeployPageOptions, type ServedDeployPage } from "./fleet-page.ts";
import { escapeHtml } from "./fleet-page-html.ts";
import { directSource, prometheusSource, readWorkersFile } from "./fleet-sources.ts";
import { startChild } from "../test/child.ts";
import { jsonlAuditSink, polled, startWorker, stopWorkers, type RealWorker } from "../test/fleet-workers.ts";

const workers: RealWorker[] = [];
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopWorkers(workers);
});

async function worker(version: string, id: string, calls: number, options: Parameters<typeof startWorker>[3] = {}): Promise<RealWorker> {
  const w = await startWorker(version, id, calls, options);
  workers.push(w);
  return w;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "openrtc-page-test-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function servePage(options: Partial<DeployPageOptions> & { urls?: string[] }): Promise<{ page: DeployPage; served: ServedDeployPage }> {
  const { urls = [], ...rest } = options;
  const page = createDeployPage({ source: directSource({ targets: () => Promise.resolve(urls) }), intervalMs: 50, ...rest });
  const served = await listenDeployPage(page);
  cleanups.push(() => page.close(), () => served.close());
  await page.ready;
  return { page, served };
}

interface Got {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function get(url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time (no keep-alive): a closed server then refuses, not hangs up.
    const req = request(url, { method: options.method ?? "GET", headers: options.headers ?? {}, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

interface SseEvent {
  id?: string;
  event?: string;
  retry?: string;
  data?: string;
}

/** Reads an event stream until `count` events with data arrived; returns them and the raw text. */
function readEvents(url: string, count: number): Promise<{ status: number; headers: IncomingHttpHeaders; raw: string; events: SseEvent[] }> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let raw = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        raw += c;
        const blocks = raw.split("\n\n").slice(0, -1);
        const events = blocks.map((b) => Object.fromEntries(b.split("\n").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)])) as SseEvent);
        if (events.filter((e) => e.data !== undefined).length >= count) {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, events });
        }
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, events: [] }));
    });
    req.on("error", reject);
    req.end();
  });
}

const HOSTILE_VERSION = `<img src=x onerror=alert(1)>"'&`;
const HOSTILE_ACTOR = "<script>alert(document.cookie)</script>";
const HOSTILE_REASON = `"><svg onload=alert(2)>`;

describe("RingBuffer", () => {
  it("keeps the newest `capacity` items in order", () => {
    const r = new RingBuffer<number>(3);
    expect(r.toArray()).toEqual([]);
    for (let i = 1; i <= 7; i++) r.push(i);
    expect(r.toArray()).toEqual([5, 6, 7]);
    expect(r.length).toBe(3);
    expect(r.last()).toBe(7);
  });

  it("refuses a capacity that is not a positive integer", () => {
    expect(() => new RingBuffer(0)).toThrow(/capacity must be a positive integer/);
    expect(() => new RingBuffer(1.5)).toThrow(/capacity must be a positive integer/);
  });
});

describe("escapeHtml", () => {
  it("escapes the five characters that matter in content and quoted attributes", () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe("&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;&#60;/a&#62;");
    expect(escapeHtml(null)).toBe("");
  });
});

describe("the deploy page over real workers", () => {
  it("serves one self-contained page with its security headers; the inline script and style match the CSP hashes", async () => {
    const w = await worker("v1.0.0", "v1-a", 1);
    const { served } = await servePage({ urls: [w.url] });
    const res = await get(`${served.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["cache-control"]).toBe("no-store");
    expect(res.headers["x-frame-options"]).toBe("DENY");
    const csp = String(res.headers["content-security-policy"]);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    const hash = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;
    const script = /<script>([\s\S]*?)<\/script>/.exec(res.body)?.[1] ?? "";
    const style = /<style>([\s\S]*?)<\/style>/.exec(res.body)?.[1] ?? "";
    expect(csp).toContain(`script-src ${hash(script)}`);
    expect(csp).toContain(`style-src ${hash(style)}`);
    // Nothing is loaded from elsewhere: no src= or href= pointing anywhere but data:.
    expect(res.body.match(/\b(?:src|href)="(?!data:)[^"]*"/g) ?? []).toEqual([]);
    // Readable without JavaScript: the current state is in the HTML itself.
    expect(res.body).toMatch(/<tr data-version="v1\.0\.0"><th scope="row">v1\.0\.0 <span class="tag">target<\/span><\/th><td class="num">1<\/td>/);
    expect(res.body).toContain('data-status="done"');
    expect(res.body).toContain('<div id="state" role="status" aria-live="polite" aria-atomic="true">');
    expect(res.body).toContain('<caption id="versions-caption">');
  });

  it("escapes hostile version names and audit records in the page, view.json and the event stream", async () => {
    const dir = await tempDir();
    const audit = join(dir, "audit.jsonl");
    const w = await worker(HOSTILE_VERSION, "evil", 1, { auditSinks: [jsonlAuditSink(audit)] });
    w.pool.auditLog.emit("deployment.started", { actor: HOSTILE_ACTOR, reason: HOSTILE_REASON, version: HOSTILE_VERSION });
    await w.pool.auditLog.flush();
    // Hand-written lines too (a hash anyone can compute proves nothing): a time no Date can
    // hold, fields of the wrong types, and a line that is not JSON at all.
    const lines = await readFile(audit, "utf8");
    await writeFile(audit, `${lines}{"seq":2,"timestamp":1e300,"event":{"x":"<b>"},"actor":7,"version":["<i>"]}\nnot json <script>\n`);
    const { served } = await servePage({ urls: [w.url], audit });
    const page = (await get(`${served.url}/`)).body;
    // `title` is text the script assigns to document.title (never parsed as HTML); the rest is markup.
    const markup = ({ title, ...html }: Record<string, string>) => {
      expect(title).toBe(`deploy → ${HOSTILE_VERSION}: DONE · openrtc`);
      return JSON.stringify(html);
    };
    const view = markup(JSON.parse((await get(`${served.url}/view.json`)).body).html);
    const events = (await readEvents(`${served.url}/events`, 1)).events.filter((e) => e.data !== undefined);
    const stream = markup(JSON.parse(events[0]?.data ?? "{}").html);
    expect(page).toContain(`<title>${escapeHtml(`deploy → ${HOSTILE_VERSION}: DONE · openrtc`)}</title>`);
    for (const text of [page, view, stream]) {
      expect(text).not.toContain("<img src=x");
      expect(text).not.toContain("<script>alert");
      expect(text).not.toContain("<svg onload");
      expect(text).toContain(escapeHtml(HOSTILE_VERSION));
      expect(text).toContain(escapeHtml(HOSTILE_ACTOR));
      expect(text).toContain(escapeHtml(HOSTILE_REASON));
    }
    expect(page).toContain(`<tr data-version="${escapeHtml(HOSTILE_VERSION)}">`);
    expect(page).toContain(`<tr><td>–</td><td>${escapeHtml('{"x":"<b>"}')}</td><td>7</td><td>${escapeHtml('["<i>"]')}</td><td></td></tr>`);
    expect(page).toContain('data-verdict="malformed"');
    // The raw values stay raw in the data API (it is JSON, served as JSON).
    const state = JSON.parse((await get(`${served.url}/state.json`)).body);
    expect(state.versions[0].version).toBe(HOSTILE_VERSION);
    expect(state.audit.records[1]).toMatchObject({ event: "deployment.started", actor: HOSTILE_ACTOR, reason: HOSTILE_REASON });
    expect(state.audit.records[0]).toMatchObject({ seq: 2, timestamp: null, event: '{"x":"<b>"}', actor: "7" });
  });

  it("state.json is the `fleet status --json` report plus the series and the audit trail", async () => {
    const dir = await tempDir();
    const audit = join(dir, "audit.jsonl");
    const v1 = await worker("v1.0.0", "v1-a", 2, { auditSinks: [jsonlAuditSink(audit)] });
    const v2 = await worker("v2.0.0", "v2-a", 1);
    v1.pool.beginDrain({ actor: "deployer", reason: "v2 rollout" });
    await v1.pool.auditLog.flush();
    const { served } = await servePage({ urls: [v1.url, v2.url], target: "v2.0.0", audit });
    const res = await get(`${served.url}/state.json`);
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    const state = JSON.parse(res.body);
    expect(Object.keys(state)).toEqual([
      "timestamp",
      "target",
      "status",
      "facts",
      "reasons",
      "totals",
      "versions",
      "workers",
      "warnings",
      "source",
      "polled_at",
      "source_error",
      "interval_ms",
      "series",
      "audit",
    ]);
    expect(state).toMatchObject({
      target: "v2.0.0",
      status: "in_progress",
      facts: { all_on_target: false, old_drained_and_exited: false, no_call_dropped: true },
      totals: { workers: 2, live_calls: 3, dropped_calls: 0, unreachable: 0 },
      source: "workers' control servers",
      source_error: null,
      interval_ms: 50,
    });
    expect(state.versions.map((v: { version: string; draining: number; live_calls: number }) => [v.version, v.draining, v.live_calls])).toEqual([
      ["v1.0.0", 1, 2],
      ["v2.0.0", 0, 1],
    ]);
    expect(state.series.capacity).toBe(720);
    expect(state.series.samples.at(-1)).toEqual({ timestamp: state.polled_at, live_calls: { "v1.0.0": 2, "v2.0.0": 1 } });
    expect(state.audit).toMatchObject({ source: audit, records_total: 1, verify: { ok: true, records: 1, origins: 1 }, error: null, note: null });
    expect(state.audit.records).toEqual([
      { seq: 1, timestamp: expect.any(Number), event: "deployment.drain_started", actor: "deployer", target: "worker", result: "ok", version: "v1.0.0", reason: "v2 rollout", origin: expect.any(String) },
    ]);
  });

  it("keeps at most `samples` samples of live calls per version (a ring buffer)", async () => {
    const w = await worker("v1.0.0", "v1-a", 1);
    const { page } = await servePage({ urls: [w.url], samples: 3 });
    await polled(w, 6);
    const samples = (page.state().series as { capacity: number; samples: { timestamp: number }[] }).samples;
    expect(samples).toHaveLength(3);
    expect(samples.map((s) => s.timestamp)).toEqual([...samples.map((s) => s.timestamp)].sort((a, b) => a - b));
    expect(new Set(samples.map((s) => s.timestamp)).size).toBe(3);
  });

  it("streams Server-Sent Events: retry, a full view with the series, then a view with one new sample per poll", async () => {
    const w = await worker("v1.0.0", "v1-a", 1);
    const { served } = await servePage({ urls: [w.url] });
    const got = await readEvents(`${served.url}/events`, 3);
    expect(got.status).toBe(200);
    expect(got.headers["content-type"]).toBe("text/event-stream; charset=utf-8");
    expect(got.headers["cache-control"]).toBe("no-store");
    expect(got.raw.startsWith("retry: 1000\n\n")).toBe(true);
    // Every message is `id`, `event`, one `data` line, then a blank line.
    for (const block of got.raw.split("\n\n").slice(1, 4)) expect(block).toMatch(/^id: \d+\nevent: view\ndata: \{[^\n]*\}$/);
    const [first, second, third] = got.events.filter((e) => e.data !== undefined).map((e) => JSON.parse(e.data as string));
    expect(Object.keys(first.html).sort()).toEqual(["audit", "banner", "fleet", "reasons", "state", "title", "updated"]);
    expect(first.series.length).toBeGreaterThanOrEqual(1);
    expect(second.sample).toEqual({ timestamp: expect.any(Number), live_calls: { "v1.0.0": 1 } });
    expect(third.sample.timestamp).toBeGreaterThan(second.sample.timestamp);
    expect(sseFrame("view", { a: "line\nbreak" }, 7)).toBe('id: 7\nevent: view\ndata: {"a":"line\\nbreak"}\n\n');
  });

  it("answers 404 for unknown paths, 405 for other methods, and HEAD without a body", async () => {
    const { served } = await servePage({});
    const missing = await get(`${served.url}/nope`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).error).toMatch(/no such page: \/nope/);
    for (const method of ["POST", "PUT", "DELETE"]) {
      const res = await get(`${served.url}/state.json`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.allow).toBe("GET, HEAD");
    }
    const head = await get(`${served.url}/`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect(Number(head.headers["content-length"])).toBeGreaterThan(1000);
    const headEvents = await get(`${served.url}/events`, { method: "HEAD" });
    expect([headEvents.status, headEvents.body, headEvents.headers["content-type"]]).toEqual([200, "", "text/event-stream; charset=utf-8"]);
  });

  it("shows a bad audit path clearly and still serves the fleet", async () => {
    const w = await worker("v1.0.0", "v1-a", 1);
    const missing = join(await tempDir(), "no-such-audit.jsonl");
    const { served } = await servePage({ urls: [w.url], audit: missing });
    const html = (await get(`${served.url}/`)).body;
    expect(html).toContain(`<p class="verdict bad" data-verdict="error"><strong>Audit trail unavailable</strong>: cannot read ${missing}: no audit log at ${missing}`);
    expect(html).toContain('<tr data-version="v1.0.0">');
    const state = JSON.parse((await get(`${served.url}/state.json`)).body);
    expect(state.status).toBe("done");
    expect(state.audit).toMatchObject({ error: expect.stringContaining(`cannot read ${missing}`), verify: null, records: [] });
    // A directory holding two logs is named as such.
    const dir = await tempDir();
    await writeFile(join(dir, "a.jsonl"), "");
    await writeFile(join(dir, "b.jsonl"), "");
    const two = await servePage({ audit: dir });
    expect((two.page.state().audit as { error: string }).error).toContain("holds several audit logs (a.jsonl, b.jsonl)");
  });

  it("reads a directory, follows the log as it grows, and shows a tampered record's fault", async () => {
    const dir = await tempDir();
    const audit = join(dir, "audit.jsonl");
    const w = await worker("v1.0.0", "v1-a", 1, { auditSinks: [jsonlAuditSink(audit)] });
    w.pool.auditLog.emit("deployment.started", { actor: "deployer", version: "v1.0.0", reason: "first" });
    await w.pool.auditLog.flush();
    const { page } = await servePage({ urls: [w.url], audit: dir });
    expect(page.state().audit).toMatchObject({ records_total: 1, verify: { ok: true, records: 1 } });
    w.pool.auditLog.emit("deployment.completed", { actor: "deployer", version: "v1.0.0", reason: "second" });
    await w.pool.auditLog.flush();
    await expect.poll(() => (page.state().audit as { records_total: number }).records_total, { timeout: 10_000 }).toBe(2);
    const text = await readFile(audit, "utf8");
    await writeFile(audit, text.replace('"reason":"first"', '"reason":"FIRST"'));
    await expect.poll(() => (page.state().audit as { verify: { ok: boolean } }).verify.ok, { timeout: 10_000 }).toBe(false);
    const audited = page.state().audit as { verify: Record<string, unknown>; records: { reason: string }[] };
    expect(audited.verify).toMatchObject({ ok: false, fault: "edited", line: 1, seq: 1, file: audit });
    // The records are still shown (newest first), under the verdict that they do not verify.
    expect(audited.records.map((r) => r.reason)).toEqual(["second", "FIRST"]);
  });

  it("ignores an unterminated last line (a write in progress) and says so", async () => {
    const dir = await tempDir();
    const audit = join(dir, "audit.jsonl");
    const w = await worker("v1.0.0", "v1-a", 0, { auditSinks: [jsonlAuditSink(audit)] });
    w.pool.auditLog.emit("deployment.started", { actor: "deployer" });
    await w.pool.auditLog.flush();
    await writeFile(audit, `${await readFile(audit, "utf8")}{"seq":2,"timest`);
    const { page } = await servePage({ audit });
    expect(page.state().audit).toMatchObject({ records_total: 1, verify: { ok: true }, note: expect.stringContaining("ignored the unterminated last line 2") });
  });

  it("says what to install for s3:// when @openrtc/audit-sinks is not beside core", async () => {
    const { served, page } = await servePage({ audit: "s3://bucket/audit" });
    const audit = page.state().audit as { error: string };
    expect(audit.error).toMatch(/^cannot read s3:\/\/bucket\/audit: reading an audit log in S3 needs @openrtc\/audit-sinks and @aws-sdk\/client-s3 installed beside @openrtc\/core \(npm install @openrtc\/audit-sinks @aws-sdk\/client-s3\)/);
    expect((await get(`${served.url}/`)).body).toContain("npm install @openrtc/audit-sinks @aws-sdk/client-s3");
  });

  it("shows a fleet source it cannot read as a banner, and keeps answering", async () => {
    const missing = join(await tempDir(), "workers.txt");
    const page = createDeployPage({ source: directSource({ targets: () => readWorkersFile(missing) }), intervalMs: 50 });
    const served = await listenDeployPage(page);
    cleanups.push(() => page.close(), () => served.close());
    await page.ready;
    const html = (await get(`${served.url}/`)).body;
    expect(html).toContain(`<p class="banner" role="alert"><strong>Could not read the fleet</strong>: could not read workers&#39; control servers: ENOENT: no such file or directory, open &#39;${missing}&#39;</p>`);
    expect(page.state()).toMatchObject({ polled_at: null, source_error: expect.stringContaining("ENOENT") });
    // Once the file appears the next poll reads it.
    const w = await worker("v1.0.0", "v1-a", 0);
    await writeFile(missing, `${w.url}\n`);
    await expect.poll(() => page.state().source_error, { timeout: 10_000 }).toBe(null);
    expect(page.state().status).toBe("done");
  });

  it("never shows the bearer token, nor credentials in a source URL", async () => {
    const w = await worker("v1.0.0", "v1-a", 1, { drainToken: "tok-secret-7f3a" });
    w.pool.beginDrain();
    const page = createDeployPage({ source: directSource({ targets: () => Promise.resolve([w.url]), token: "tok-secret-7f3a" }), intervalMs: 50 });
    const served = await listenDeployPage(page);
    cleanups.push(() => page.close(), () => served.close());
    await page.ready;
    // The token did its job (call ages come from GET /sessions) without reaching the page.
    expect((page.state().versions as { oldest_call_seconds: number | null }[])[0]?.oldest_call_seconds).not.toBe(null);
    for (const path of ["/", "/state.json", "/view.json"]) expect((await get(`${served.url}${path}`)).body).not.toContain("tok-secret-7f3a");
    expect((await readEvents(`${served.url}/events`, 1)).raw).not.toContain("tok-secret-7f3a");

    const prom = createDeployPage({ source: prometheusSource({ url: "http://admin:hunter2@127.0.0.1:9/" }), intervalMs: 50 });
    const promServed = await listenDeployPage(prom);
    cleanups.push(() => prom.close(), () => promServed.close());
    await prom.ready;
    expect(prom.state()).toMatchObject({ source: "Prometheus at http://127.0.0.1:9/", source_error: expect.stringContaining("could not read Prometheus at http://127.0.0.1:9/") });
    for (const path of ["/", "/state.json", "/view.json"]) expect((await get(`${promServed.url}${path}`)).body).not.toContain("hunter2");
  });

  it("refuses event streams beyond maxViewers (503: the page polls), and close() ends streams", async () => {
    const { page, served } = await servePage({ maxViewers: 1 });
    let streaming!: () => void;
    const started = new Promise<void>((r) => (streaming = r));
    const first = new Promise<string>((resolve) => {
      request(`${served.url}/events`, (res) => {
        let raw = "";
        res.on("data", (c: Buffer) => {
          raw += c.toString();
          if (raw.includes("event: view")) streaming();
        });
        res.on("end", () => resolve(raw));
      }).end();
    });
    await started;
    const refused = await get(`${served.url}/events`);
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBe("10");
    expect(JSON.parse(refused.body).error).toContain("falls back to polling /view.json");
    page.close();
    expect(await first).toContain("event: view");
    expect((await get(`${served.url}/state.json`)).status).toBe(503);
  });

  it("bound to loopback, answers only requests that name a loopback Host (DNS rebinding)", async () => {
    const { served } = await servePage({});
    const rebound = await get(`${served.url}/state.json`, { headers: { host: "attacker.example:8090" } });
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body).error).toContain("open it as localhost or 127.0.0.1");
    expect((await get(`${served.url}/state.json`, { headers: { host: `localhost:${new URL(served.url).port}` } })).status).toBe(200);
  });

  it("mounted under a prefix, serves only below it and links to its own paths", async () => {
    const { page, served } = await servePage({ path: "/deploy" });
    expect(page.path).toBe("/deploy");
    expect(served.url).toMatch(/\/deploy$/);
    const html = (await get(`${served.url}`)).body;
    expect(html).toContain('data-events="/deploy/events" data-view="/deploy/view.json"');
    expect((await get(`${served.url}/`)).status).toBe(200);
    expect((await get(`${served.url}/state.json`)).status).toBe(200);
    expect((await get(`${served.url}/nope`)).status).toBe(404);
    expect((await get(new URL("/state.json", served.url).href)).status).toBe(404);
  });

  it.each<[string, Partial<DeployPageOptions>, RegExp]>([
    ["no source", { source: undefined as never }, /source is required/],
    ["a path without a leading slash", { path: "deploy" }, /path must be "" or start with \//],
    ["a path with a trailing slash", { path: "/deploy/" }, /path must be/],
    ["a zero interval", { intervalMs: 0 }, /intervalMs must be a positive number/],
    ["no samples", { samples: 0 }, /samples must be a positive number/],
    ["an empty audit location", { audit: "" }, /the audit log location is empty/],
    ["an s3:// URL without a bucket", { audit: "s3://" }, /is not an S3 location: expected s3:\/\/BUCKET\[\/PREFIX\]/],
  ])("refuses %s", (_name, options, message) => {
    expect(() => createDeployPage({ source: directSource({ targets: () => Promise.resolve([]) }), ...options })).toThrow(message);
  });
});

function capture() {
  const out = { stdout: "", stderr: "" };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env: {} } };
}

describe("openrtc fleet serve", () => {
  it("prints the URL it listens on, serves the page, and exits 0 when stopped", async () => {
    const w = await worker("v2.0.0", "v2-a", 1);
    const dir = await tempDir();
    const { out, io } = capture();
    let stop!: () => void;
    const run = runFleet(["serve", "--workers", w.url, "--listen", "127.0.0.1:0", "--interval", "50ms", "--version", "v2.0.0", "--audit", join(dir, "missing.jsonl")], io, {
      stop: new Promise<void>((r) => (stop = r)),
    });
    await expect.poll(() => out.stdout, { timeout: 10_000 }).toMatch(/^deploy page: http:\/\/127\.0\.0\.1:\d+\/\n$/);
    const url = out.stdout.slice("deploy page: ".length).trim();
    expect((await get(url)).body).toContain("Is the deploy done?");
    await expect.poll(async () => JSON.parse((await get(`${url}state.json`)).body).status, { timeout: 10_000 }).toBe("done");
    await expect.poll(() => out.stderr, { timeout: 10_000 }).toContain(`openrtc fleet serve: audit trail: cannot read ${join(dir, "missing.jsonl")}`);
    stop();
    expect(await run).toBe(0);
    await expect(get(url)).rejects.toThrow(/ECONNREFUSED/);
  });

  it("warns when it listens beyond loopback (the page has no login)", async () => {
    const { out, io } = capture();
    let stop!: () => void;
    const run = runFleet(["serve", "--workers", "http://127.0.0.1:9", "--listen", "0.0.0.0:0"], io, { stop: new Promise<void>((r) => (stop = r)) });
    await expect.poll(() => out.stdout, { timeout: 10_000 }).toContain("deploy page: http://0.0.0.0:");
    expect(out.stderr).toContain("listening beyond loopback: the page has no login");
    stop();
    expect(await run).toBe(0);
  });

  it.each([
    [["serve"], /name exactly one source/],
    [["serve", "--workers", "http://x", "--listen", "8090"], /--listen: expected HOST:PORT \(e\.g\. 127\.0\.0\.1:8090/],
    [["serve", "--workers", "http://x", "--listen", "localhost:99999"], /--listen: expected HOST:PORT/],
    [["serve", "--workers", "http://x", "--listen", "::1:8090"], /--listen: expected HOST:PORT/],
    [["serve", "--workers", "http://x", "--audit", ""], /--audit: the audit log location is empty/],
    [["serve", "--workers", "http://x", "--audit", "s3://"], /--audit: "s3:\/\/" is not an S3 location/],
    [["serve", "--workers", "http://x", "--interval", "0"], /--interval must be positive/],
    [["serve", "--workers", "http://x", "--interval", "often"], /not a duration/],
    [["serve", "--workers", "http://x", "--json"], /--json goes with status or wait/],
    [["serve", "--workers", "http://x", "--timeout", "1m"], /--timeout goes with wait/],
    [["serve", "--workers", "http://x", "--per-worker"], /--per-worker goes with status, watch or wait/],
    [["status", "--workers", "http://x", "--listen", "127.0.0.1:8090"], /--listen goes with serve/],
    [["watch", "--workers", "http://x", "--audit", "audit.jsonl"], /--audit goes with serve/],
    [["serve", "--workers", "http://x", "extra"], /unexpected argument: extra/],
  ])("usage errors exit 2: %j", async (args, message) => {
    const { out, io } = capture();
    expect(await main(["fleet", ...args], io)).toBe(2);
    expect(out.stderr).toMatch(message);
  });

  it("exits 2 when it cannot listen", async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => busy.close(r)));
    const port = (busy.address() as { port: number }).port;
    const { out, io } = capture();
    expect(await main(["fleet", "serve", "--workers", "http://127.0.0.1:9", "--listen", `127.0.0.1:${port}`], io)).toBe(2);
    expect(out.stderr).toBe(`openrtc fleet: serve: cannot listen on 127.0.0.1:${port}: the address is in use\n`);
    expect(out.stdout).toBe("");
  });

  it.each(["SIGINT", "SIGTERM"] as const)("as a real process, %s closes it cleanly with exit 0", async (signal) => {
    const w = await worker("v1.0.0", "v1-a", 0);
    const child = startChild(fileURLToPath(new URL("./cli.ts", import.meta.url)), ["fleet", "serve", "--workers", w.url, "--listen", "127.0.0.1:0", "--interval", "100ms"]);
    cleanups.push(() => child.child.kill("SIGKILL"));
    const line = await child.waitFor("deploy page: ");
    const url = line.slice("deploy page: ".length);
    await expect.poll(async () => JSON.parse((await get(`${url}state.json`)).body).status, { timeout: 30_000 }).toBe("done");
    child.child.kill(signal);
    expect(await child.exited).toEqual({ code: 0, signal: null });
    expect(child.stderr()).toBe("");
  });
});
