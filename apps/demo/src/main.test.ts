import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { workerExecArgv } from "./fleet.ts";
import { parseFlags, UsageError } from "./main.ts";

const mainPath = fileURLToPath(new URL("./main.ts", import.meta.url));

describe("parseFlags", () => {
  test("defaults and values", () => {
    expect(parseFlags([])).toEqual({ calls: 40, seed: 1, json: false, auditFile: undefined, help: false });
    expect(parseFlags(["--", "--calls", "8", "--seed=-3", "--json", "--audit-file", "/tmp/a.jsonl"])).toEqual({ calls: 8, seed: -3, json: true, auditFile: "/tmp/a.jsonl", help: false });
  });

  test.each([
    [["--calls", "ten"], /--calls must be an integer, got "ten"/],
    [["--calls=-1"], /--calls must be between 0 and 1000/],
    [["--calls", "5000"], /--calls must be between 0 and 1000, got 5000/],
    [["--calls", "1.5"], /--calls must be an integer/],
    [["--seed", "x"], /--seed must be an integer/],
    [["--bogus"], /Unknown option '--bogus'/],
    [["--calls"], /--calls/],
    [["extra"], /positional/i],
    [["--audit-file", " "], /--audit-file needs a file path/],
  ])("%j is refused: %s", (argv, message) => {
    expect(() => parseFlags(argv)).toThrow(UsageError);
    expect(() => parseFlags(argv)).toThrow(message);
  });
});

describe("the CLI", () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [...workerExecArgv(), mainPath, ...args], { encoding: "utf8", env: { ...process.env, LIVEKIT_URL: "", LIVEKIT_API_KEY: "", LIVEKIT_API_SECRET: "" } });

  test("a bad flag exits 2 naming it, with the usage, and prints nothing on stdout", () => {
    const r = run("--calls", "many");
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('openrtc demo: --calls must be an integer, got "many"');
    expect(r.stderr).toContain("usage: pnpm demo");
  });

  test("an unknown flag exits 2", () => {
    const r = run("--fast");
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("Unknown option '--fast'");
  });

  test("half-set LiveKit credentials exit 2 naming the missing ones", () => {
    const r = spawnSync(process.execPath, [...workerExecArgv(), mainPath, "--calls", "1"], { encoding: "utf8", env: { ...process.env, LIVEKIT_URL: "ws://127.0.0.1:1", LIVEKIT_API_KEY: "", LIVEKIT_API_SECRET: "" } });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("LIVEKIT_URL set but LIVEKIT_API_KEY, LIVEKIT_API_SECRET not");
  });

  test("--help exits 0 with the usage", () => {
    const r = run("--help");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("--calls N");
  });
});
