import { describe, expect, test } from "vitest";
import { compareCommand } from "./cli-compare.ts";
import type { CliIo } from "./cli-command.ts";

function io(): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { X: "1" } };
}

describe("openrtc compare", () => {
  test("hands its arguments and io to the observer's runCompare and returns its exit code", async () => {
    const seen: unknown[] = [];
    const cmd = compareCommand(async () => ({ runCompare: async (argv: readonly string[], o: { env: unknown }) => (seen.push(argv, o.env), 3) }));
    const x = io();
    expect(await cmd.run(["--base", "v1", "--candidate", "v2"], x)).toBe(3);
    expect(seen).toEqual([["--base", "v1", "--candidate", "v2"], { X: "1" }]);
  });

  test("without the observer package: exit 2 and how to install it", async () => {
    const missing = Object.assign(new Error("Cannot find package"), { code: "ERR_MODULE_NOT_FOUND" });
    const x = io();
    expect(await compareCommand(() => Promise.reject(missing)).run([], x)).toBe(2);
    expect(x.err.join("")).toMatch(/needs @openrtc\/observer-voicegateway \(pnpm add/);
    // A module without runCompare is treated the same way.
    expect(await compareCommand(async () => ({})).run([], io())).toBe(2);
  });

  test("any other load failure is not hidden", async () => {
    await expect(compareCommand(() => Promise.reject(new SyntaxError("broken"))).run([], io())).rejects.toThrow(/broken/);
  });
});
