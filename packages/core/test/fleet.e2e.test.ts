// `openrtc fleet` against real pools and real control servers (in this process, and the CLI as
// a child process): a blue-green deploy and a rollback phase by phase, and `wait`'s exit codes
// for done, dropped (closed dropping, vanished with sessions), stuck, timeout and unreachable.
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { main } from "../src/cli.ts";
import { FleetTracker, fleetReportJSON, judgeFleet, renderFleet } from "../src/fleet.ts";
import { EXIT_TIMEOUT, parseDuration, runFleet } from "../src/fleet-cli.ts";
import { directSource } from "../src/fleet-sources.ts";
import { SOURCE_EXEC_ARGV } from "./child.ts";
import { polled, startWorker, stopWorkers, type RealWorker } from "./fleet-workers.ts";

type Worker = RealWorker;

const started: Worker[] = [];
let clockNow = 1_000_000;
const clock = () => clockNow;

async function worker(version: string, id: string, calls: number, options: { drainTimeoutMs?: number; drainToken?: string } = {}): Promise<Worker> {
  const w = await startWorker(version, id, calls, { clock, ...options });
  started.push(w);
  return w;
}

afterEach(() => stopWorkers(started));

function capture(env: Record<string, string> = {}) {
  const out = { stdout: "", stderr: "" };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env } };
}

/**
 * Runs `openrtc fleet` in-process on a virtual clock: each sleep between polls advances it by the
 * interval (and yields a few real ms so the workers can change), so `--timeout` is deterministic.
 */
async function fleet(args: string[], env: Record<string, string> = {}) {
  const { out, io } = capture(env);
  let offset = 0;
  // Starts at the workers' clock (so drain ages line up) and then moves only by its own sleeps.
  const base = clockNow;
  const code = await runFleet(args, io, {
    clock: () => base + offset,
    sleep: async (ms) => {
      offset += ms / 1000;
      await new Promise((r) => setTimeout(r, 5));
    },
  });
  return { code, ...out };
}

const list = (...ws: Worker[]) => ws.map((w) => w.url).join(",");

/** A tracker polled like `watch` does, so phases are seen with memory. */
function watcher(urls: () => string[], target?: string) {
  const source = directSource({ targets: () => Promise.resolve(urls()) });
  const tracker = new FleetTracker({ goneAfter: 1 });
  return async () => {
    tracker.update(await source.read(), clock());
    const report = judgeFleet(tracker.list(), { now: clock(), ...(target === undefined ? {} : { target }) });
    return { report, text: renderFleet(report), json: fleetReportJSON(report) as { status: string; facts: Record<string, boolean>; versions: Array<Record<string, unknown>>; reasons: string[] } };
  };
}

const versionRow = (json: { versions: Array<Record<string, unknown>> }, v: string) => json.versions.find((r) => r.version === v);

describe("openrtc fleet over workers' control servers", () => {
  it("follows a blue-green deploy phase by phase: status lines, JSON, progress bar, done", async () => {
    const v1a = await worker("v1.0.0", "v1-a", 2);
    const v1b = await worker("v1.0.0", "v1-b", 1);
    const urls = [v1a.url, v1b.url];
    const poll = watcher(() => urls, "v2.0.0");

    // Before: only v1 serves.
    let s = await poll();
    expect(s.json.status).toBe("in_progress");
    expect(s.json.facts).toEqual({ all_on_target: false, old_drained_and_exited: false, no_call_dropped: true });
    expect(versionRow(s.json, "v1.0.0")).toMatchObject({ workers: 2, serving: 2, draining: 0, exited: 0, live_calls: 3, dropped_calls: 0 });
    expect(s.text).toContain("no v2.0.0 worker is serving");

    // v2 comes up next to v1: two versions accept calls.
    const v2a = await worker("v2.0.0", "v2-a", 1);
    const v2b = await worker("v2.0.0", "v2-b", 0);
    urls.push(v2a.url, v2b.url);
    s = await poll();
    expect(s.text).toMatch(/^v1\.0\.0\s+2\s+2\s+0\s+0\s+0\s+3\s+/m);
    expect(s.text).toMatch(/^v2\.0\.0\s+2\s+2\s+0\s+0\s+0\s+1\s+/m);
    expect(s.text).toContain("2 old-version worker(s) still serving (v1.0.0)");
    const inferred = await fleet(["status", "--workers", urls.join(","), "--json"]);
    expect(JSON.parse(inferred.stdout)).toMatchObject({ target: null, status: "in_progress", reasons: [expect.stringContaining("no single version accepts calls")] });

    // Drain v1: it rejects new jobs; its calls finish; the bar moves.
    clockNow += 60;
    v1a.pool.beginDrain({ actor: "test", reason: "v2 rollout" });
    v1b.pool.beginDrain({ actor: "test", reason: "v2 rollout" });
    expect(() => v1a.pool.startSession({ jobId: "late", metadata: { tenant: "acme" } })).toThrow();
    s = await poll();
    expect(versionRow(s.json, "v1.0.0")).toMatchObject({ serving: 0, draining: 2, live_calls: 3, draining_calls: 3, rejected_jobs: 1, oldest_call_seconds: 60, drain_progress: 0 });
    expect(s.text).toMatch(/drain v1\.0\.0 {2}\[░{20}\] {3}0% {2}3 call\(s\) left on 2 worker\(s\), oldest 1m00s/);
    expect(s.text).toContain("still draining: 3 call(s) left on 2 worker(s), oldest 1m00s");
    expect(s.json.facts).toEqual({ all_on_target: false, old_drained_and_exited: false, no_call_dropped: true });

    // The gate starts while v1 drains, as a pipeline would.
    const gate = fleet(["wait", "--workers", urls.join(","), "--version", "v2.0.0", "--interval", "20ms", "--timeout", "30s"]);

    clockNow += 840;
    v1a.calls[0]?.end({ status: "success" });
    v1a.calls[1]?.end({ status: "success" });
    await polled(v1a); // the gate saw v1-a at zero before it exits
    s = await poll();
    expect(versionRow(s.json, "v1.0.0")).toMatchObject({ draining: 2, live_calls: 1, oldest_call_seconds: 900 });
    expect(s.text).toMatch(/drain v1\.0\.0 {2}\[█{13}░{7}\] {2}67% {2}1 call\(s\) left on 2 worker\(s\), oldest 15m00s/);

    // v1-a drained with zero calls and exits: exited clean.
    await v1a.exit();
    s = await poll();
    expect(versionRow(s.json, "v1.0.0")).toMatchObject({ draining: 1, exited: 1, live_calls: 1, dropped_calls: 0 });
    expect(s.report.workers.find((w) => w.workerId === "v1-a")?.note).toBe("exited clean");

    v1b.calls[0]?.end({ status: "success" });
    await polled(v1b);
    s = await poll();
    expect(s.text).toMatch(/drain v1\.0\.0 {2}\[█{20}\] 100% {2}drained, waiting for exit/);
    await v1b.exit();
    s = await poll();
    expect(s.json.status).toBe("done");
    expect(s.json.facts).toEqual({ all_on_target: true, old_drained_and_exited: true, no_call_dropped: true });
    expect(versionRow(s.json, "v1.0.0")).toMatchObject({ workers: 2, exited: 2, live_calls: 0 });
    expect(s.text).toContain("deploy → v2.0.0: DONE");
    expect(s.text).toContain("[x] every worker reports v2.0.0");

    const done = await gate;
    expect(done.code).toBe(0);
    expect(done.stdout).toContain("deploy to v2.0.0 done");
  });

  it("follows a rollback (v2 → v1) the same way, and wait exits 0", async () => {
    const v2a = await worker("v2.0.0", "v2-a", 2);
    const v1c = await worker("v1.0.0", "v1-c", 0);
    const urls = [v2a.url, v1c.url];
    const poll = watcher(() => urls, "v1.0.0");
    let s = await poll();
    expect(s.text).toContain("1 old-version worker(s) still serving (v2.0.0)");

    v2a.pool.beginDrain({ actor: "test", reason: "rollback" });
    v1c.calls.push(v1c.pool.startSession({ jobId: "new-on-v1", metadata: { tenant: "acme" } }));
    s = await poll();
    expect(s.json).toMatchObject({ status: "in_progress", facts: { all_on_target: false, old_drained_and_exited: false, no_call_dropped: true } });
    expect(versionRow(s.json, "v2.0.0")).toMatchObject({ draining: 1, live_calls: 2 });
    expect(versionRow(s.json, "v1.0.0")).toMatchObject({ serving: 1, live_calls: 1 });
    const status = await fleet(["status", "--workers", list(v2a, v1c)]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain("deploy → v1.0.0: IN PROGRESS");

    const gate = fleet(["wait", "--workers", list(v2a, v1c), "--version", "v1.0.0", "--interval", "20ms", "--timeout", "30s", "--json"]);
    for (const c of v2a.calls) c.end({ status: "success" });
    await polled(v2a);
    s = await poll();
    expect(s.text).toMatch(/drain v2\.0\.0 {2}\[█{20}\] 100% {2}drained, waiting for exit/);
    expect(s.text).toContain("1 drained worker(s) not exited yet");
    await v2a.exit();
    const done = await gate;
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ target: "v1.0.0", status: "done", totals: { dropped_calls: 0, live_calls: 1 } });
  });

  it("wait exits 1 when a worker closes dropping calls (its own counter)", async () => {
    const v1 = await worker("v1.0.0", "v1-drop", 2);
    const v2 = await worker("v2.0.0", "v2-ok", 0);
    v1.pool.beginDrain();
    await v1.pool.close({ dropLiveSessions: true, reason: "hard kill" });
    const status = await fleet(["status", "--workers", list(v1, v2), "--version", "v2.0.0"]);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain("deploy → v2.0.0: CALLS DROPPED");
    expect(status.stdout).toContain("[ ] no call dropped (2 dropped)");
    const wait = await fleet(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--interval", "20ms"]);
    expect(wait.code).toBe(1);
    expect(wait.stderr).toMatch(/a call was dropped: 2 call\(s\) dropped: v1-drop \(v1\.0\.0\) closed, dropped 2 call\(s\)/);
  });

  it("wait exits 1 when a draining worker vanishes holding calls", async () => {
    const v1 = await worker("v1.0.0", "v1-vanish", 2);
    const v2 = await worker("v2.0.0", "v2-ok", 0);
    v1.pool.beginDrain();
    const gate = fleet(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--interval", "20ms", "--timeout", "30s"]);
    await polled(v1);
    await v1.vanish();
    const wait = await gate;
    expect(wait.code).toBe(1);
    expect(wait.stderr).toContain("v1-vanish (v1.0.0) vanished with 2 session(s)");
    expect(wait.stdout).toContain("! dropped: v1-vanish (v1.0.0) vanished with 2 session(s)");
  });

  it("wait exits 1 on a drain stuck past its timeout, with the calls' ages", async () => {
    const v1 = await worker("v1.0.0", "v1-stuck", 2, { drainTimeoutMs: 20 });
    const v2 = await worker("v2.0.0", "v2-ok", 0);
    clockNow += 125;
    v1.pool.beginDrain();
    await expect.poll(() => v1.pool.runtimeSnapshot().drainStuck, { timeout: 5000 }).toBe(true);
    const wait = await fleet(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--interval", "20ms"]);
    expect(wait.code).toBe(1);
    expect(wait.stderr).toContain("a drain is stuck past its timeout: drain stuck on v1-stuck");
    expect(wait.stdout).toMatch(/! stuck: drain stuck on v1-stuck \(v1\.0\.0, http:\/\/127\.0\.0\.1:\d+\): draining for 0s, 2 call\(s\) live past the drain timeout, oldest 2m05s: v1-stuck-job-\d \(\w+, 2m05s\), v1-stuck-job-\d \(\w+, 2m05s\)/);
  });

  it("--drain-timeout counts an old drain with calls as stuck even before the worker's own timeout", async () => {
    const v1 = await worker("v1.0.0", "v1-slow", 1);
    const v2 = await worker("v2.0.0", "v2-ok", 0);
    v1.pool.beginDrain();
    clockNow += 3600;
    const wait = await fleet(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--drain-timeout", "30m", "--interval", "20ms"]);
    expect(wait.code).toBe(1);
    expect(wait.stderr).toContain("draining for 1h00m");
  });

  it("wait exits 124 on timeout, saying what is left", async () => {
    const v1 = await worker("v1.0.0", "v1-long", 1);
    const v2 = await worker("v2.0.0", "v2-ok", 0);
    v1.pool.beginDrain();
    clockNow += 10;
    const { out, io } = capture();
    let t = 0;
    // A clock that moves 1 s per poll: the 3 s timeout passes deterministically.
    const code = await runFleet(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--timeout", "3s", "--interval", "1s"], io, { clock: () => clockNow + t, sleep: async () => void (t += 1) });
    expect(code).toBe(EXIT_TIMEOUT);
    expect(out.stderr).toMatch(/timed out after 3s, deploy to v2\.0\.0 not done: still draining: 1 call\(s\) left on 1 worker\(s\), oldest 1\ds/);
  });

  it("a worker never reached is unreachable and keeps the deploy from done (124)", async () => {
    const v2 = await worker("v2.0.0", "v2-ok", 0);
    const dead = await worker("v2.0.0", "never", 0);
    await dead.vanish();
    const status = await fleet(["status", "--workers", list(v2, dead), "--version", "v2.0.0", "--json"]);
    const json = JSON.parse(status.stdout);
    expect(json).toMatchObject({ status: "in_progress", totals: { unreachable: 1 } });
    expect(json.reasons).toEqual([`1 worker(s) unreachable: ${dead.url}`]);
    expect(json.workers.find((w: { url: string }) => w.url === dead.url)).toMatchObject({ phase: "unreachable", last_seen: null, note: "unreachable: ECONNREFUSED" });
    const wait = await fleet(["wait", "--workers", list(v2, dead), "--version", "v2.0.0", "--timeout", "200ms", "--interval", "20ms"]);
    expect(wait.code).toBe(124);
    expect(wait.stderr).toContain(`1 worker(s) unreachable: ${dead.url}`);
  });

  it("reads call ages from GET /sessions with --token or OPENRTC_DRAIN_TOKEN, and says when it cannot", async () => {
    const v1 = await worker("v1.0.0", "v1-tok", 1, { drainToken: "s3cret" });
    clockNow += 842;
    v1.pool.beginDrain();
    const without = await fleet(["status", "--workers", v1.url, "--version", "v2.0.0", "--json"]);
    expect(JSON.parse(without.stdout).versions[0]).toMatchObject({ live_calls: 1, oldest_call_seconds: null });
    const withFlag = await fleet(["status", "--workers", v1.url, "--version", "v2.0.0", "--token", "s3cret"]);
    expect(withFlag.stdout).toMatch(/^v1\.0\.0\s+1\s+0\s+1\s+0\s+0\s+1\s+14m02s\s+0\s+0$/m);
    const withEnv = await fleet(["status", "--workers", v1.url, "--version", "v2.0.0", "--json"], { OPENRTC_DRAIN_TOKEN: "s3cret" });
    expect(JSON.parse(withEnv.stdout).versions[0]).toMatchObject({ oldest_call_seconds: 842 });
  });

  it("reads the worker list from a file, re-read on every poll", async () => {
    const dir = await mkdtemp(join(tmpdir(), "openrtc-fleet-"));
    try {
      const v2 = await worker("v2.0.0", "v2-file", 3);
      const file = join(dir, "workers.txt");
      await writeFile(file, `# the fleet\n${new URL(v2.url).host}\n\n`);
      const status = await fleet(["status", "--workers-file", file, "--json"]);
      expect(JSON.parse(status.stdout)).toMatchObject({ target: "v2.0.0", status: "done", totals: { workers: 1, live_calls: 3 } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [["status"], /name exactly one source/],
    [["status", "--workers", "http://x", "--prometheus", "http://y"], /name exactly one source/],
    [["wait", "--workers", "http://x"], /wait needs --version/],
    [["wait", "--workers", "http://x", "--version", "v2", "--timeout", "soon"], /not a duration/],
    [["bogus", "--workers", "http://x"], /unknown subcommand "bogus"/],
    [["status", "--workers", "ftp://x"], /not an http\(s\) URL/],
    [["watch", "--workers", "http://x", "--json"], /--json goes with status or wait/],
  ])("usage errors exit 2: %j", async (args, message) => {
    const { out, io } = capture();
    expect(await main(["fleet", ...args], io)).toBe(2);
    expect(out.stderr).toMatch(message);
  });

  it("parses durations", () => {
    expect([parseDuration("500ms"), parseDuration("10s"), parseDuration("5m"), parseDuration("1h30m"), parseDuration("2")]).toEqual([500, 10_000, 300_000, 5_400_000, 2000]);
  });
});

describe("openrtc fleet wait as a real process", () => {
  const cwd = fileURLToPath(new URL("..", import.meta.url));
  const run = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [...SOURCE_EXEC_ARGV, "src/cli.ts", "fleet", ...args], { cwd, timeout: 60_000 }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr }),
      );
    });
  afterAll(() => stopWorkers(started));

  it("exits 0 once the old version drained and exited, 124 while it has not", async () => {
    const v1 = await worker("v1.0.0", "v1-child", 1);
    const v2 = await worker("v2.0.0", "v2-child", 1);
    v1.pool.beginDrain();
    const timedOut = await run(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--timeout", "300ms", "--interval", "50ms"]);
    expect(timedOut.code).toBe(124);
    expect(timedOut.stderr).toContain("still draining: 1 call(s) left on 1 worker(s)");
    const gate = run(["wait", "--workers", list(v1, v2), "--version", "v2.0.0", "--timeout", "60s", "--interval", "50ms"]);
    await polled(v1);
    v1.calls[0]?.end({ status: "success" });
    await polled(v1);
    await v1.exit();
    const done = await gate;
    expect(done.code).toBe(0);
    expect(done.stdout).toContain("deploy to v2.0.0 done");
  });
});
