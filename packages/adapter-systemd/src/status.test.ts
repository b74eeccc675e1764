import { describe, expect, it } from "vitest";
import { AgentPool, silentLogger } from "@openrtc/core";
import { formatAge, formatStatus } from "./status.ts";

describe("formatAge", () => {
  it.each([
    [0, "0s"],
    [42.9, "42s"],
    [252, "4m12s"],
    [3603, "1h0m3s"],
    [-5, "0s"],
  ])("%s s → %s", (seconds, text) => expect(formatAge(seconds)).toBe(text));
});

describe("formatStatus", () => {
  it("names the version, the state and the live calls in every state", () => {
    let now = 1000;
    const pool = new AgentPool({ deploymentVersion: "v2.0.0", logger: silentLogger, clock: () => now });
    expect(formatStatus(pool)).toBe("v2.0.0 starting");
    pool.markReady();
    expect(formatStatus(pool)).toBe("v2.0.0 serving, 0 live calls");
    const a = pool.startSession({ jobId: "a" });
    now += 10;
    pool.startSession({ jobId: "b" });
    pool.startSession({ jobId: "c" });
    expect(formatStatus(pool)).toBe("v2.0.0 serving, 3 live calls");
    pool.beginDrain();
    now += 242;
    expect(formatStatus(pool)).toBe("v2.0.0 draining, 3 live calls left, oldest 4m12s");
    a.end();
    expect(formatStatus(pool)).toBe("v2.0.0 draining, 2 live calls left, oldest 4m2s");
    pool.session("b")!.end();
    expect(formatStatus(pool, "reloading")).toBe("v2.0.0 draining, 1 live call left, oldest 4m2s (reloading)");
    pool.session("c")!.end();
    expect(formatStatus(pool)).toBe("v2.0.0 drained, exiting");
  });

  it("an untagged worker, a non-member, and a note that would break the datagram's lines", () => {
    const pool = new AgentPool({ logger: silentLogger, membership: { isMember: () => false, subscribe: () => () => {} } });
    pool.markReady();
    expect(formatStatus(pool)).toBe("untagged serving, not a member (not_member): no new calls, 0 live calls");
    const text = formatStatus(pool, `line one\nREADY=1 ${"x".repeat(300)}`);
    expect(text).not.toContain("\n");
    expect(text.length).toBeLessThanOrEqual(200);
  });
});
