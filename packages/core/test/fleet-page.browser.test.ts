// The deploy page in headless Chromium (Debian's `chromium`, driven by playwright-core) over real
// pools and control servers: a blue-green deploy and a rollback phase by phase, the page
// updating itself as workers drain, a dropped call, the audit trail, keyboard use and an
// accessibility sanity check. Screenshots of each phase land in test/output/fleet-page/.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createDeployPage, listenDeployPage, type DeployPage, type ServedDeployPage } from "../src/fleet-page.ts";
import { directSource } from "../src/fleet-sources.ts";
import { jsonlAuditSink, startWorker, stopWorkers, type RealWorker } from "./fleet-workers.ts";

// The callbacks given to evaluate/waitForFunction run in the page; the project has no DOM lib
// (it is Node code), so the few browser globals they use are declared here, loosely.
declare const document: any, getComputedStyle: (e: unknown) => { color: string; backgroundColor: string };
type DomElement = { parentElement: DomElement | null };

// A real browser on a shared 2-core machine, beside other suites: generous, never timing-based.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const CHROMIUM = "/usr/bin/chromium";
const OUT = fileURLToPath(new URL("./output/fleet-page/", import.meta.url));
const WAIT_MS = 60_000;

let browser: Browser;
const workers: RealWorker[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/dev.sh setup does)`);
  await mkdir(OUT, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
});

afterAll(async () => {
  await browser?.close();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopWorkers(workers);
});

async function worker(version: string, id: string, calls: number, auditPath?: string): Promise<RealWorker> {
  const w = await startWorker(version, id, calls, auditPath === undefined ? {} : { auditSinks: [jsonlAuditSink(auditPath)] });
  workers.push(w);
  return w;
}

async function serve(urls: string[], options: { target: string; audit?: string; maxViewers?: number }): Promise<{ page: DeployPage; served: ServedDeployPage }> {
  const page = createDeployPage({
    source: directSource({ targets: () => Promise.resolve([...urls]) }),
    intervalMs: 100,
    target: options.target,
    ...(options.audit === undefined ? {} : { audit: options.audit }),
    ...(options.maxViewers === undefined ? {} : { maxViewers: options.maxViewers }),
  });
  const served = await listenDeployPage(page);
  cleanups.push(() => page.close(), () => served.close());
  return { page, served };
}

async function open(url: string): Promise<{ tab: Page; errors: string[] }> {
  const tab = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  cleanups.push(() => tab.close());
  const errors: string[] = [];
  // A CSP violation or a script error shows up here.
  tab.on("console", (m) => void (m.type() === "error" && errors.push(m.text())));
  tab.on("pageerror", (e) => void errors.push(e.message));
  tab.on("dialog", (d) => void (errors.push(`dialog: ${d.message()}`), d.dismiss()));
  await tab.goto(url);
  return { tab, errors };
}

/** The cells of a table row, as text. */
function cells(tab: Page, selector: string): Promise<string[]> {
  return tab.$$eval(`${selector} > *`, (els) => els.map((e) => (e.textContent ?? "").trim().replace(/\s+/g, " ")));
}

/**
 * Waits (with Playwright's polling, no fixed sleeps) until the row's cells start with `want`;
 * on timeout says what the page showed instead.
 */
async function waitRow(tab: Page, selector: string, want: string[]): Promise<void> {
  try {
    await tab.waitForFunction(
      ([sel, w]) => {
        const row = document.querySelector(sel as string);
        if (row === null) return false;
        const got = [...row.children].map((e) => (e.textContent ?? "").trim().replace(/\s+/g, " "));
        return (w as string[]).every((x, i) => x === "*" || got[i] === x);
      },
      [selector, want] as const,
      { timeout: WAIT_MS, polling: 50 },
    );
  } catch (error) {
    const got = await cells(tab, selector).catch(() => []);
    throw new Error(`${selector}: waited for ${JSON.stringify(want)}, the page shows ${JSON.stringify(got)}: ${(error as Error).message}`);
  }
}

async function waitStatus(tab: Page, status: string): Promise<void> {
  try {
    await tab.waitForSelector(`#state [data-status="${status}"]`, { timeout: WAIT_MS });
  } catch (error) {
    throw new Error(`waited for status ${status}, the state region says ${JSON.stringify(await tab.textContent("#state"))}: ${(error as Error).message}`);
  }
}

/** Waits until the element's text matches; on timeout says what it showed instead. */
async function waitText(tab: Page, selector: string, want: RegExp): Promise<void> {
  try {
    await tab.waitForFunction(([sel, src, flags]) => new RegExp(src as string, flags as string).test(document.querySelector(sel as string)?.textContent ?? ""), [selector, want.source, want.flags] as const, {
      timeout: WAIT_MS,
      polling: 50,
    });
  } catch (error) {
    throw new Error(`${selector}: waited for ${want}, the page shows ${JSON.stringify(await tab.textContent(selector).catch(() => null))}: ${(error as Error).message}`);
  }
}

const facts = (tab: Page) => tab.$$eval("#state [data-fact]", (els) => Object.fromEntries(els.map((e) => [e.getAttribute("data-fact"), e.getAttribute("data-met") === "true"])));
const seriesVersions = (tab: Page) => tab.$$eval("#chart path.series", (els) => els.map((e) => e.getAttribute("data-version")).sort());

async function waitSeries(tab: Page, versions: string[]): Promise<void> {
  for (const v of versions) await tab.waitForSelector(`#chart path.series[data-version="${v}"]`, { state: "attached", timeout: WAIT_MS });
  expect(await seriesVersions(tab)).toEqual([...versions].sort());
}

async function shot(tab: Page, name: string): Promise<void> {
  await tab.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });
}

/** What an automated reader needs: captions, header cells, a live region, named images, a language. */
function accessibilityProblems(tab: Page): Promise<string[]> {
  return tab.evaluate(() => {
    const problems: string[] = [];
    if (document.documentElement.lang === "") problems.push("html has no lang");
    if (document.querySelector("h1") === null) problems.push("no h1");
    for (const t of document.querySelectorAll("table")) {
      if ((t.querySelector(":scope > caption")?.textContent ?? "").trim() === "") problems.push(`table#${t.id} has no caption`);
      const ths = t.querySelectorAll("th");
      if (ths.length === 0) problems.push(`table#${t.id} has no header cells`);
      for (const th of ths) if (th.getAttribute("scope") === null) problems.push(`table#${t.id}: th "${th.textContent}" has no scope`);
    }
    const live = document.getElementById("state");
    if (live?.getAttribute("aria-live") !== "polite") problems.push("the deploy state is not an aria-live region");
    for (const svg of document.querySelectorAll("svg")) {
      if (svg.getAttribute("aria-hidden") === "true") continue;
      const named = (svg.getAttribute("aria-label") ?? "") !== "" || (svg.getAttribute("aria-labelledby") ?? "").split(/\s+/).some((id: string) => (document.getElementById(id)?.textContent ?? "").trim() !== "");
      if (!named || svg.querySelector(":scope > title") === null) problems.push(`svg#${svg.id} has no title/aria-label`);
    }
    for (const img of document.querySelectorAll("img")) if (!img.hasAttribute("alt")) problems.push("img without alt");
    for (const b of document.querySelectorAll("button")) if ((b.textContent ?? "").trim() === "" && !b.getAttribute("aria-label")) problems.push("unnamed button");
    for (const p of document.querySelectorAll("progress")) if (!p.getAttribute("aria-label")) problems.push("unnamed progress bar");
    // WCAG AA contrast of text against the first opaque background behind it.
    const rgb = (c: string) => (c.match(/[\d.]+/g) ?? []).map(Number);
    const lum = ([r, g, b]: number[]) => {
      const f = (v: number) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r ?? 0) + 0.7152 * f(g ?? 0) + 0.0722 * f(b ?? 0);
    };
    const background = (e: DomElement | null): number[] => {
      for (; e !== null; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c[3] ?? 0) > 0.99) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    for (const e of document.querySelectorAll("body, h1, h2, th, td, caption, .badge, .reasons li, .verdict, .note, header p, .mark, .legend li, button")) {
      if ((e.textContent ?? "").trim() === "") continue;
      const a = lum(rgb(getComputedStyle(e).color));
      const b = lum(background(e));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) problems.push(`${e.tagName.toLowerCase()}.${e.className}: contrast ${ratio.toFixed(2)} < 4.5 ("${(e.textContent ?? "").trim().slice(0, 40)}")`);
    }
    return [...new Set(problems)];
  });
}

describe("the deploy page in Chromium", () => {
  it("follows a blue-green deploy v1 → v2: loads, shows each phase, updates as workers drain", async () => {
    const dir = await mkdtemp(join(tmpdir(), "openrtc-page-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const auditPath = join(dir, "audit.jsonl");
    const v1a = await worker("v1.0.0", "v1-a", 2, auditPath);
    const v1b = await worker("v1.0.0", "v1-b", 1, auditPath);
    // An audit record is untrusted input: it must show as text, never run.
    v1a.pool.auditLog.emit("deployment.started", { actor: '<img src=x onerror="alert(1)">', version: "v2.0.0", reason: "</td></tr></table><script>alert(2)</script>" });
    const urls = [v1a.url, v1b.url];
    const { served } = await serve(urls, { target: "v2.0.0", audit: auditPath });
    const { tab, errors } = await open(`${served.url}/`);

    // 1. Only v1 serves.
    await waitRow(tab, '#versions tr[data-version="v1.0.0"]', ["v1.0.0", "2", "2", "0", "0", "0", "3"]);
    await waitStatus(tab, "in_progress");
    expect(await facts(tab)).toEqual({ all_on_target: false, old_drained_and_exited: false, no_call_dropped: true });
    expect(await tab.textContent("#reasons")).toContain("no v2.0.0 worker is serving");
    await waitSeries(tab, ["v1.0.0"]);
    await tab.waitForSelector('#audit-records td:text-is("deployment.started")', { timeout: WAIT_MS });
    expect(await tab.textContent("#audit-records")).toContain('<img src=x onerror="alert(1)">');
    expect(await tab.textContent("#audit-records")).toContain("</td></tr></table><script>alert(2)</script>");
    expect(await tab.$$("#audit img, #audit script")).toHaveLength(0);
    expect(await tab.textContent("#audit .verdict")).toMatch(/Chains intact: 1 record\(s\), 1 origin\(s\)/);
    expect(await tab.textContent("#conn")).toBe("live");
    expect(await accessibilityProblems(tab)).toEqual([]);
    await shot(tab, "1-v1-serving");

    // 2. v2 starts beside v1: both serve, the deploy is in progress.
    const v2a = await worker("v2.0.0", "v2-a", 1, auditPath);
    const v2b = await worker("v2.0.0", "v2-b", 0, auditPath);
    urls.push(v2a.url, v2b.url);
    await waitRow(tab, '#versions tr[data-version="v2.0.0"]', ["v2.0.0 target", "2", "2", "0", "0", "0", "1"]);
    await tab.waitForSelector('#reasons li:text-is("2 old-version worker(s) still serving (v1.0.0)")', { timeout: WAIT_MS });
    await waitStatus(tab, "in_progress");
    expect(await facts(tab)).toEqual({ all_on_target: false, old_drained_and_exited: false, no_call_dropped: true });
    await waitSeries(tab, ["v1.0.0", "v2.0.0"]);
    await shot(tab, "2-v2-started");

    // 3. v1 drains: its calls run on, the drain bar moves as they hang up.
    v1a.pool.beginDrain({ actor: "deployer", reason: "v2 rollout" });
    v1b.pool.beginDrain({ actor: "deployer", reason: "v2 rollout" });
    await waitRow(tab, '#versions tr[data-version="v1.0.0"]', ["v1.0.0", "2", "0", "2", "0", "0", "3", "*", "*", "0", "0% · 3 call(s) left"]);
    await tab.waitForSelector('#audit-records td:text-is("deployment.drain_started")', { timeout: WAIT_MS });
    v1a.calls[0]?.end({ status: "success" });
    v1a.calls[1]?.end({ status: "success" });
    await waitRow(tab, '#versions tr[data-version="v1.0.0"]', ["v1.0.0", "2", "0", "2", "0", "0", "1", "*", "*", "0", "67% · 1 call(s) left"]);
    await waitRow(tab, '#workers tr[data-worker="v1-a"]', ["v1-a", "v1.0.0", "draining", "drained", "0"]);
    await waitRow(tab, '#workers tr[data-worker="v1-b"]', ["v1-b", "v1.0.0", "draining", "draining", "1"]);
    expect(await tab.textContent("#reasons")).toContain("still draining: 1 call(s) left on 1 worker(s)");
    expect(await facts(tab)).toEqual({ all_on_target: false, old_drained_and_exited: false, no_call_dropped: true });
    await waitSeries(tab, ["v1.0.0", "v2.0.0"]);
    await shot(tab, "3-v1-draining");

    // 4. v1 drained to zero and exited: done.
    await v1a.exit();
    v1b.calls[0]?.end({ status: "success" });
    await waitRow(tab, '#workers tr[data-worker="v1-b"]', ["v1-b", "v1.0.0", "draining", "drained", "0"]);
    await v1b.exit();
    await waitStatus(tab, "done");
    expect(await facts(tab)).toEqual({ all_on_target: true, old_drained_and_exited: true, no_call_dropped: true });
    await waitRow(tab, '#versions tr[data-version="v1.0.0"]', ["v1.0.0", "2", "0", "0", "2", "0", "0"]);
    expect(await tab.textContent("#state")).toContain("DONE");
    expect(await tab.title()).toBe("deploy → v2.0.0: DONE · openrtc");
    await tab.waitForSelector('#audit-records td:text-is("worker.exited")', { timeout: WAIT_MS });
    // Both v1 pools wrote to the one file (the v2 pools have had nothing to record): two chains, interleaved, intact.
    await waitText(tab, "#audit .verdict", /Chains intact: \d+ record\(s\), 2 origin\(s\)/);
    await waitSeries(tab, ["v1.0.0", "v2.0.0"]);
    expect(await accessibilityProblems(tab)).toEqual([]);
    await shot(tab, "4-done");
    expect(errors).toEqual([]);
  });

  it("follows a rollback v2 → v1 to a dropped call; a viewer refused a stream polls instead", async () => {
    const v2a = await worker("v2.0.0", "v2-a", 2);
    const v2b = await worker("v2.0.0", "v2-b", 1);
    const v1c = await worker("v1.0.0", "v1-c", 0);
    const urls = [v2a.url, v2b.url, v1c.url];
    const { served } = await serve(urls, { target: "v1.0.0", maxViewers: 1 });
    const { tab, errors } = await open(`${served.url}/`);
    await waitRow(tab, '#versions tr[data-version="v2.0.0"]', ["v2.0.0", "2", "2", "0", "0", "0", "3"]);
    expect(await tab.textContent("#conn")).toBe("live");
    // A second viewer past maxViewers gets 503 on the stream and falls back to polling view.json.
    const second = await open(`${served.url}/`);
    await second.tab.waitForSelector('#conn:text-matches("polling every 100 ms")', { timeout: WAIT_MS });

    // 5. Roll back: v2 drains, v1 takes the new calls.
    v2a.pool.beginDrain({ actor: "deployer", reason: "rollback" });
    v2b.pool.beginDrain({ actor: "deployer", reason: "rollback" });
    v1c.calls.push(v1c.pool.startSession({ jobId: "new-on-v1", metadata: { tenant: "acme" } }));
    await waitRow(tab, '#versions tr[data-version="v2.0.0"]', ["v2.0.0", "2", "0", "2", "0", "0", "3"]);
    await waitRow(tab, '#versions tr[data-version="v1.0.0"]', ["v1.0.0 target", "1", "1", "0", "0", "0", "1"]);
    await waitStatus(tab, "in_progress");
    await waitSeries(tab, ["v1.0.0", "v2.0.0"]);
    await shot(tab, "5-rollback");

    // 6. v2-b disappears holding a call: dropped.
    v2a.calls[0]?.end({ status: "success" });
    await waitRow(tab, '#versions tr[data-version="v2.0.0"]', ["v2.0.0", "2", "0", "2", "0", "0", "2"]);
    await v2b.vanish();
    await waitStatus(tab, "dropped");
    expect(await facts(tab)).toEqual({ all_on_target: false, old_drained_and_exited: false, no_call_dropped: false });
    expect(await tab.textContent("#state")).toContain("no call dropped (1 dropped)");
    expect(await tab.textContent("#state")).toContain("CALLS DROPPED");
    expect(await tab.textContent("#fleet .warnings")).toContain("v2-b (v2.0.0) vanished with 1 session(s)");
    await waitRow(tab, '#workers tr[data-worker="v2-b"]', ["v2-b", "v2.0.0", "exited", "*", "0", "*", "*", "1"]);
    await waitStatus(second.tab, "dropped");
    await waitSeries(tab, ["v1.0.0", "v2.0.0"]);
    expect(await accessibilityProblems(tab)).toEqual([]);
    await shot(tab, "6-dropped");
    expect([...errors, ...second.errors.filter((e) => !/503/.test(e))]).toEqual([]);
  });

  it("works with the keyboard (pause and resume) and reads without JavaScript", async () => {
    const v1 = await worker("v1.0.0", "v1-k", 1);
    const { page, served } = await serve([v1.url], { target: "v1.0.0" });
    const { tab, errors } = await open(`${served.url}/`);
    await waitStatus(tab, "done");
    await tab.keyboard.press("Tab");
    expect(await tab.evaluate(() => document.activeElement?.id)).toBe("pause");
    await tab.keyboard.press("Enter");
    expect(await tab.getAttribute("#pause", "aria-pressed")).toBe("true");
    expect(await tab.textContent("#conn")).toBe("paused");
    // Paused: the server has seen a new call, the table keeps what it showed until updates resume.
    v1.calls.push(v1.pool.startSession({ jobId: "while-paused", metadata: { tenant: "acme" } }));
    await expect.poll(() => (page.state().totals as { live_calls: number }).live_calls, { timeout: WAIT_MS }).toBe(2);
    expect((await cells(tab, '#versions tr[data-version="v1.0.0"]'))[6]).toBe("1");
    await tab.keyboard.press("Space");
    expect(await tab.textContent("#pause")).toBe("Pause live updates");
    await waitRow(tab, '#versions tr[data-version="v1.0.0"]', ["v1.0.0 target", "1", "1", "0", "0", "0", "2"]);
    // The scrollable tables are reachable with Tab too.
    await tab.keyboard.press("Tab");
    expect(await tab.evaluate(() => document.activeElement?.getAttribute("aria-labelledby"))).toBe("versions-caption");
    expect(errors).toEqual([]);

    const context = await browser.newContext({ javaScriptEnabled: false });
    cleanups.push(() => context.close());
    const plain = await context.newPage();
    await plain.goto(`${served.url}/`);
    expect(await plain.textContent("#state")).toContain("DONE");
    expect(await cells(plain, '#versions tr[data-version="v1.0.0"]')).toEqual(expect.arrayContaining(["v1.0.0 target"]));
    expect(await plain.textContent("#conn")).toBe("static page: reload for the latest state");
    expect(await plain.isHidden("#pause")).toBe(true);
  });
});
