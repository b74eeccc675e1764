import { describe, expect, it } from "vitest";
import { AgentPool, silentLogger, type Logger } from "@openrtc/core";
import { attachSystemd } from "./systemd.ts";

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (_fields: object, message: string) => void lines.push(`${level} ${message}`);
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

describe("attachSystemd", () => {
  it.each([[{ extendByMs: 0 }], [{ extendByMs: Number.NaN }], [{ maxStopMs: -1 }], [{ maxStopMs: Number.POSITIVE_INFINITY }]])("refuses %j", (options) => {
    expect(() => attachSystemd(new AgentPool({ logger: silentLogger }), { env: {}, ...options })).toThrow(RangeError);
  });

  it("without NOTIFY_SOCKET says so once at debug level, joins the one shutdown path, and close() leaves nothing behind", async () => {
    const logger = recordingLogger();
    const pool = new AgentPool({ logger: silentLogger });
    const sigterm = process.listenerCount("SIGTERM");
    const sighup = process.listenerCount("SIGHUP");
    const exits: number[] = [];
    const attachment = attachSystemd(pool, { env: {}, logger, exit: (code) => exits.push(code) });
    expect(logger.lines).toEqual(["debug systemd: NOTIFY_SOCKET is not set (not a Type=notify service): no notifications are sent; SIGTERM still drains"]);
    // No reload handler without systemd: SIGHUP keeps its default meaning.
    expect(process.listenerCount("SIGHUP")).toBe(sighup);
    expect(process.listenerCount("SIGTERM")).toBe(sigterm + 1);
    pool.markReady();
    pool.beginDrain();
    await pool.drained;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(exits).toEqual([0]);
    attachment.close();
    attachment.close();
    expect(process.listenerCount("SIGTERM")).toBe(sigterm);
  });

  it("with a socket installs the reload handler and removes it on close", () => {
    const pool = new AgentPool({ logger: silentLogger });
    const sighup = process.listenerCount("SIGHUP");
    const attachment = attachSystemd(pool, { env: { NOTIFY_SOCKET: `@openrtc-unit-test/${process.pid}/nobody` }, logger: silentLogger, exit: () => {} });
    expect(process.listenerCount("SIGHUP")).toBe(sighup + 1);
    attachment.close();
    expect(process.listenerCount("SIGHUP")).toBe(sighup);
    const off = attachSystemd(pool, { env: { NOTIFY_SOCKET: `@openrtc-unit-test/${process.pid}/nobody` }, logger: silentLogger, reloadSignal: false, exit: () => {} });
    expect(process.listenerCount("SIGHUP")).toBe(sighup);
    off.close();
  });
});
