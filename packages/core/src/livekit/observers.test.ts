import { describe, expect, test } from "vitest";
import { notifyObservers, type SessionObserver } from "./observers.ts";
import type { Logger } from "../logger.ts";

function recordingLogger(): Logger & { warnings: unknown[] } {
  const warnings: unknown[] = [];
  const noop = () => {};
  return { warnings, debug: noop, info: noop, error: noop, warn: (fields, message) => warnings.push({ ...fields, message }) };
}

describe("notifyObservers", () => {
  test("a throwing, a rejecting and a hanging observer are logged and skipped; the others still run", async () => {
    const logger = recordingLogger();
    const seen: string[] = [];
    const observers: SessionObserver[] = [
      { name: "throws", onSessionStart: () => { throw new Error("sync boom"); } },
      { name: "rejects", onSessionStart: () => Promise.reject(new Error("async boom")) },
      { name: "hangs", onSessionStart: () => new Promise<void>(() => {}) },
      { name: "good", onSessionStart: () => { seen.push("good"); } },
    ];
    await notifyObservers(observers, (o) => o.onSessionStart?.({} as never, null), logger, 50);
    expect(seen).toEqual(["good"]);
    expect(logger.warnings).toEqual([
      expect.objectContaining({ observer: "throws", err: "Error: sync boom" }),
      expect.objectContaining({ observer: "rejects", err: "Error: async boom" }),
      expect.objectContaining({ observer: "hangs", err: "Error: did not finish within 50 ms" }),
    ]);
  });

  test("a throwing logger while reporting a failed observer does not fail the notification", async () => {
    const throwing: Logger = { debug() {}, info() {}, error() {}, warn: () => { throw new Error("log boom"); } };
    await expect(notifyObservers([{ onSessionStart: () => { throw new Error("x"); } }], (o) => o.onSessionStart?.({} as never, null), throwing)).resolves.toBeUndefined();
  });

  test("observers without the hook are fine", async () => {
    const logger = recordingLogger();
    await notifyObservers([{}], (o) => o.onSessionEnd?.({} as never, {} as never), logger);
    expect(logger.warnings).toEqual([]);
  });
});
