import { describe, expect, it } from "vitest";
import { spawnWorker } from "./spawn-worker.ts";

describe("spawnWorker and the worker launcher", () => {
  it("rejects `registered` naming the exit when the launcher dies before registering", async () => {
    const w = spawnWorker({ env: { AGENT_FILE: undefined, LIVEKIT_URL: "ws://127.0.0.1:9", LIVEKIT_API_KEY: "k", LIVEKIT_API_SECRET: "s" } });
    await expect(w.registered).rejects.toThrow(new RegExp(`worker ${w.pid} exited \\(code 2, signal null\\) before sending "registered"`));
    expect(await w.exited).toEqual({ code: 2, signal: null });
    w.kill("SIGKILL"); // already gone: a no-op, not an error
  });

  it("the launcher exits 2 when LIVEKIT_URL is missing instead of retrying ws://localhost:7880", async () => {
    const w = spawnWorker({ env: { LIVEKIT_URL: undefined, LIVEKIT_API_KEY: undefined, LIVEKIT_API_SECRET: "s" }, killOnParentExit: false });
    expect(await w.exited).toEqual({ code: 2, signal: null });
  });
});
