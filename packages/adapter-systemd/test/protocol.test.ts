// The sd_notify protocol end to end without systemd: a real unix datagram socket (path and
// abstract) receives the real datagrams of a real worker process that gets real signals.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { signManifest } from "@openrtc/core";
import { Receiver, Worker } from "./harness.ts";

const dir = mkdtempSync(path.join(tmpdir(), "openrtc-systemd-"));
let serial = 0;
const running: { close?: () => Promise<void>; kill?: () => void }[] = [];

function pathAddress(): string {
  return path.join(dir, `notify-${++serial}.sock`);
}
function abstractAddress(): string {
  return `@openrtc-test/${process.pid}/${++serial}`;
}

async function receiver(address: string): Promise<Receiver> {
  const r = new Receiver(address);
  running.push(r);
  await r.bound();
  return r;
}

function worker(env: Record<string, string | undefined>): Worker {
  const w = new Worker(env);
  running.push(w);
  return w;
}

afterEach(async () => {
  for (const p of running.splice(0)) {
    p.kill?.();
    await p.close?.();
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each([
  ["path", pathAddress],
  ["abstract", abstractAddress],
])("a %s notify socket", (_kind, address) => {
  it("READY → STATUS → STOPPING → EXTEND_TIMEOUT_USEC… while a call is held → exit 0 once it hangs up", async () => {
    const r = await receiver(address());
    const w = worker({ NOTIFY_SOCKET: r.address, EXTEND_BY_MS: "300" });
    await w.waitFor("ATTACHED");
    await r.waitFor("STATUS", "v1.0.0 starting");
    await w.command("start call-1", "STARTED call-1");
    await w.command("ready", "OK ready");
    const ready = await r.waitFor("READY", "1");
    expect(ready.fields.get("MAINPID")).toBe(String(w.pid));
    expect(ready.pid).toBe(w.pid);
    expect(ready.fields.get("STATUS")).toBe("v1.0.0 serving, 1 live call");
    await w.command("start call-2", "STARTED call-2");
    await r.waitFor("STATUS", "v1.0.0 serving, 2 live calls");

    w.child.kill("SIGTERM");
    const stopping = await r.waitFor("STOPPING", "1");
    // One datagram: systemd never sees STOPPING=1 without the first extension.
    expect(stopping.fields.get("EXTEND_TIMEOUT_USEC")).toBe("300000");
    expect(stopping.fields.get("STATUS")).toMatch(/^v1\.0\.0 draining, 2 live calls left, oldest \d+s$/);
    const first = r.datagrams.indexOf(stopping);
    // Extensions keep coming while the calls are live, each asking for extendByMs again.
    await r.waitForCount("EXTEND_TIMEOUT_USEC", 4);
    for (const d of r.with("EXTEND_TIMEOUT_USEC")) expect(d.fields.get("EXTEND_TIMEOUT_USEC")).toBe("300000");
    await w.command("end call-1", "ENDED call-1");
    // Pacing: each extension reached the socket before the previous one ran out (receipt times,
    // CLOCK_MONOTONIC), i.e. systemd's stop timeout never lapsed while a call was live.
    const paced = r.with("EXTEND_TIMEOUT_USEC").map((d) => ({ ms: d.ms, askMs: Number(d.fields.get("EXTEND_TIMEOUT_USEC")) / 1000 }));
    expect(paced.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < paced.length; i++) expect(paced[i]!.ms, `extension ${i} after the previous ran out`).toBeLessThan(paced[i - 1]!.ms + paced[i - 1]!.askMs);
    await r.waitFor("STATUS", /^v1\.0\.0 draining, 1 live call left, oldest \d+s$/, first);
    await w.command("end call-2", "ENDED call-2");
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(r.statuses()).toContain("v1.0.0 closed, exiting");
    // STOPPING=1 once; READY=1 once; every datagram from the worker itself (NotifyAccess=main).
    expect(r.with("STOPPING")).toHaveLength(1);
    expect(r.with("READY")).toHaveLength(1);
    for (const d of r.datagrams) expect(d.pid).toBe(w.pid);
    expect(w.audit("worker.exited")[0]).toMatchObject({ result: "ok", dropped_sessions: 0 });
    expect(w.logs("warn", "")).toEqual([]);
  });

  it("a drain begun by the application (not a signal) also tells systemd it is stopping", async () => {
    const r = await receiver(address());
    const w = worker({ NOTIFY_SOCKET: r.address, READY_AT_START: "1" });
    await r.waitFor("READY", "1");
    await w.command("start call-1", "STARTED call-1");
    await w.command("drain", "OK drain");
    const stopping = await r.waitFor("STOPPING", "1");
    expect(stopping.fields.get("EXTEND_TIMEOUT_USEC")).toBe("30000000");
    await w.command("start call-2", "REJECTED call-2");
    await w.command("end call-1", "ENDED call-1");
    expect((await w.exited).code).toBe(0);
  });
});

describe("the stop ceiling (maxStopMs)", () => {
  it("stops extending at the ceiling, records the dropped call before it, and exits 130", async () => {
    const r = await receiver(abstractAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, EXTEND_BY_MS: "300", MAX_STOP_MS: "1000", READY_AT_START: "1" });
    await r.waitFor("READY", "1");
    await w.command("start call-1", "STARTED call-1");
    w.child.kill("SIGTERM");
    await r.waitFor("STOPPING", "1");
    expect((await w.exited).code).toBe(130);
    const extensions = r.with("EXTEND_TIMEOUT_USEC").map((d) => ({ ms: d.ms, usec: Number(d.fields.get("EXTEND_TIMEOUT_USEC")) }));
    const start = extensions[0]!.ms;
    // No extension reaches past the ceiling (1 ms of slack for rounding and the receiver's clock read).
    for (const e of extensions) expect(e.ms - start + e.usec / 1000).toBeLessThanOrEqual(1000 + 5);
    expect(extensions.at(-1)!.usec).toBeLessThan(300_000);
    const exited = w.audit("worker.exited")[0];
    expect(exited).toMatchObject({ result: "dropped", dropped_sessions: 1, actor: "systemd" });
    expect(r.statuses().some((s) => s.includes("stop ceiling maxStopMs=1000 reached: 1 live call dropped"))).toBe(true);
    expect(w.logs("error", "stop ceiling reached")).toHaveLength(1);
  });
});

describe("the watchdog", () => {
  it("pings every half WATCHDOG_USEC, and the pings stop while the event loop stalls", async () => {
    const r = await receiver(pathAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, WATCHDOG_USEC: "200000", READY_AT_START: "1" });
    await r.waitForCount("WATCHDOG", 4);
    const before = r.with("WATCHDOG").length;
    await w.command("stall 1500", "OK stall");
    await r.waitForCount("WATCHDOG", r.with("WATCHDOG").length + 2);
    const pings = r.with("WATCHDOG").map((d) => d.ms);
    const gaps = pings.slice(1).map((ms, i) => ms - pings[i]!);
    // The 1.5 s busy loop is the only way to a gap this long: no ping can be sent during it.
    expect(Math.max(...gaps.slice(before - 1))).toBeGreaterThanOrEqual(1400);
    for (const d of r.with("WATCHDOG")) expect(d.data).toBe("WATCHDOG=1");
  });

  it("sends no ping when WATCHDOG_PID names another process", async () => {
    const r = await receiver(pathAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, WATCHDOG_USEC: "100000", WATCHDOG_PID: "1", READY_AT_START: "1" });
    await r.waitFor("READY", "1");
    // The first ping would be sent synchronously at attach, before READY.
    await w.command("start call-1", "STARTED call-1");
    await r.waitFor("STATUS", "v1.0.0 serving, 1 live call");
    expect(r.with("WATCHDOG")).toEqual([]);
    expect(w.logs("debug", "the watchdog is for another process")).toHaveLength(1);
  });

  it("reports a malformed WATCHDOG_USEC and sends no ping", async () => {
    const r = await receiver(pathAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, WATCHDOG_USEC: "soon", READY_AT_START: "1" });
    await r.waitFor("READY", "1");
    expect(r.with("WATCHDOG")).toEqual([]);
    expect(w.logs("warn", "WATCHDOG_USEC is not a positive integer")).toHaveLength(1);
  });
});

describe("reload (SIGHUP)", () => {
  const secret = "reload-test-secret";
  function manifestFile(seq: number, versions: string[]): string {
    const now = Date.now() / 1000;
    return JSON.stringify(signManifest({ seq, activeVersions: versions, issuedAt: now, expiresAt: now + 3600, secret }));
  }

  it("RELOADING=1 with MONOTONIC_USEC, the manifest read again, then READY=1", async () => {
    const file = path.join(dir, `manifest-${++serial}.json`);
    writeFileSync(file, manifestFile(1, ["v1.0.0"]));
    const r = await receiver(pathAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, READY_AT_START: "1", MANIFEST_FILE: file, MANIFEST_SECRET: secret });
    await r.waitFor("READY", "1");
    expect(r.statuses().at(-1)).toBe("v1.0.0 serving, 0 live calls");

    writeFileSync(file, manifestFile(2, ["v2.0.0"]));
    w.child.kill("SIGHUP");
    const reloading = await r.waitFor("RELOADING", "1");
    // CLOCK_MONOTONIC, the receiver's clock too: the stamp is the moment of the reload.
    const stamp = Number(reloading.fields.get("MONOTONIC_USEC")) / 1000;
    expect(Math.abs(stamp - reloading.ms)).toBeLessThan(1000);
    expect(reloading.fields.get("STATUS")).toBe("v1.0.0 serving, 0 live calls (reloading)");
    await r.waitFor("READY", "1", r.datagrams.indexOf(reloading));
    expect(r.statuses().at(-1)).toBe("v1.0.0 serving, not a member (not_member): no new calls, 0 live calls");
    expect(w.lines).toContain("RELOAD-HOOK");
    expect(w.audit("worker.membership_changed")[0]).toMatchObject({ member: false });
    await w.command("start call-1", "REJECTED call-1");

    // An older manifest is refused; the reload still completes and says what happened.
    writeFileSync(file, manifestFile(1, ["v1.0.0"]));
    const mark = r.datagrams.length;
    w.child.kill("SIGHUP");
    await r.waitFor("READY", "1", mark);
    expect(r.statuses().at(-1)).toContain("last reload: manifest stale_seq");
    expect(w.audit("worker.manifest_rejected")[0]).toMatchObject({ reason: "stale_seq" });

    w.child.kill("SIGTERM");
    expect((await w.exited).code).toBe(0);
  });

  it("a reload while draining is ignored (systemd does not reload a stopping unit)", async () => {
    const r = await receiver(abstractAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, READY_AT_START: "1" });
    await r.waitFor("READY", "1");
    await w.command("start call-1", "STARTED call-1");
    await w.command("drain", "OK drain");
    await r.waitFor("STOPPING", "1");
    w.child.kill("SIGHUP");
    await w.waitFor("LOG info systemd: reload ignored while the worker drains");
    await w.command("end call-1", "ENDED call-1");
    expect((await w.exited).code).toBe(0);
    expect(r.with("RELOADING")).toEqual([]);
  });
});

describe("no socket, bad socket, vanished socket", () => {
  it("without NOTIFY_SOCKET: nothing is sent, it says so once at debug level, and SIGTERM still drains", async () => {
    const w = worker({ READY_AT_START: "1" });
    await w.waitFor("ATTACHED");
    await w.command("start call-1", "STARTED call-1");
    w.child.kill("SIGTERM");
    await w.waitFor("STATE draining");
    await w.command("end call-1", "ENDED call-1");
    expect((await w.exited).code).toBe(0);
    expect(w.logs("debug", "NOTIFY_SOCKET is not set")).toHaveLength(1);
    expect(w.logs("warn", "")).toEqual([]);
  });

  it.each([
    ["a relative path", "run/notify", "EINVAL_ADDRESS"],
    ["a missing directory", "/nonexistent-openrtc/notify.sock", "ENOENT"],
    ["an abstract name nobody bound", "@openrtc-test/nobody-here", "ECONNREFUSED"],
  ])("with %s: reported once, calls unaffected, exit 0", async (_what, address, code) => {
    const w = worker({ NOTIFY_SOCKET: address, WATCHDOG_USEC: "50000", READY_AT_START: "1" });
    await w.waitFor("ATTACHED");
    for (let i = 0; i < 5; i++) {
      await w.command(`start call-${i}`, `STARTED call-${i}`);
      await w.command(`end call-${i}`, `ENDED call-${i}`);
    }
    await w.command("start held", "STARTED held");
    w.child.kill("SIGTERM");
    await w.waitFor("STATE draining");
    await w.command("end held", "ENDED held");
    expect((await w.exited).code).toBe(0);
    const warnings = w.logs("warn", "cannot notify the service manager");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`"code":"${code}"`);
    expect(w.audit("worker.exited")[0]).toMatchObject({ result: "ok", dropped_sessions: 0 });
  });

  it("a socket that vanishes is reported once, calls carry on, and it is used again once it is back", async () => {
    const r = await receiver(pathAddress());
    const w = worker({ NOTIFY_SOCKET: r.address, READY_AT_START: "1" });
    await r.waitFor("READY", "1");
    await r.unbind();
    for (let i = 0; i < 3; i++) await w.command(`start call-${i}`, `STARTED call-${i}`);
    await w.command("end call-0", "ENDED call-0");
    await w.waitFor("LOG warn systemd: cannot notify");
    await r.rebind();
    await w.command("end call-1", "ENDED call-1");
    const back = await r.waitFor("STATUS", "v1.0.0 serving, 1 live call", r.datagrams.length);
    expect(back.pid).toBe(w.pid);
    await w.waitFor("LOG info systemd: the notify socket works again");
    expect(w.logs("warn", "cannot notify")).toHaveLength(1);
    expect(w.logs("warn", "cannot notify")[0]).toContain('"code":"ENOENT"');
    w.child.kill("SIGTERM");
    await r.waitFor("STOPPING", "1");
    await w.command("end call-2", "ENDED call-2");
    expect((await w.exited).code).toBe(0);
  });
});
