import { describe, expect, test } from "vitest";
import { parseCommand, UsageError } from "./cli-args.ts";

describe("parseCommand: the command line of agents-js cli.runApp", () => {
  test("start: production, info by default, flags win over the environment, which wins over code", () => {
    const env = { LIVEKIT_URL: "ws://env", LIVEKIT_API_KEY: "env-key", LIVEKIT_API_SECRET: "env-secret" };
    expect(parseCommand(["start"], env)).toMatchObject({ kind: "worker", command: "start", production: true, logLevel: "info", url: "ws://env", apiKey: "env-key", apiSecret: "env-secret" });
    expect(parseCommand(["--url", "ws://flag", "start", "--api-key", "k", "--api-secret=s"], env)).toMatchObject({ url: "ws://flag", apiKey: "k", apiSecret: "s" });
    expect(parseCommand(["start"], {})).toMatchObject({ url: undefined, apiKey: undefined, apiSecret: undefined });
  });

  test("dev is not production and logs at debug; LOG_LEVEL and --log-level set the level", () => {
    expect(parseCommand(["dev"], {})).toMatchObject({ command: "dev", production: false, logLevel: "debug" });
    expect(parseCommand(["dev"], { LOG_LEVEL: "warn" })).toMatchObject({ logLevel: "warn" });
    expect(parseCommand(["dev", "--log-level", "error"], { LOG_LEVEL: "warn" })).toMatchObject({ logLevel: "error" });
    expect(parseCommand(["dev", "--cli-addr", "127.0.0.1:9"], {})).toMatchObject({ cliAddr: "127.0.0.1:9" });
  });

  test("connect needs --room and takes --participant-identity", () => {
    expect(parseCommand(["connect", "--room", "r1", "--participant-identity", "caller"], {})).toMatchObject({ command: "connect", production: false, room: "r1", participantIdentity: "caller" });
    expect(() => parseCommand(["connect"], {})).toThrow(/connect needs --room/);
  });

  test("the worker token comes from --worker-token or LIVEKIT_WORKER_TOKEN; --simulation only for start", () => {
    expect(parseCommand(["start"], { LIVEKIT_WORKER_TOKEN: "wt" })).toMatchObject({ workerToken: "wt" });
    expect(parseCommand(["start", "--simulation"], {})).toMatchObject({ simulation: true });
    expect(() => parseCommand(["dev", "--simulation"], {})).toThrow(/--simulation is not an option of dev/);
  });

  test("help, version and the commands the SDK's own CLI runs", () => {
    expect(parseCommand([], {})).toMatchObject({ kind: "help" });
    expect(parseCommand(["--help"], {})).toMatchObject({ kind: "help" });
    expect(parseCommand(["-V"], {})).toEqual({ kind: "version" });
    expect(parseCommand(["console", "--connect-addr", "x:1"], {})).toEqual({ kind: "delegate", command: "console" });
    expect(parseCommand(["download-files"], {})).toEqual({ kind: "delegate", command: "download-files" });
  });

  test("bad command lines are usage errors that say what was wrong", () => {
    const cases: [string[], RegExp][] = [
      [["stat"], /unknown command "stat": use start, dev or connect/],
      [["start", "--nope"], /Unknown option '--nope'/],
      [["start", "--log-level", "loud"], /--log-level "loud" is not one of trace, debug, info, warn, error, fatal/],
      [["start", "--room", "r"], /--room is not an option of start/],
      [["start", "extra"], /unexpected argument "extra" after start/],
      [["start", "--url"], /--url/],
    ];
    for (const [args, message] of cases) {
      let error: unknown;
      try {
        parseCommand(args, {});
      } catch (e) {
        error = e;
      }
      expect(error, args.join(" ")).toBeInstanceOf(UsageError);
      expect((error as Error).message, args.join(" ")).toMatch(message);
    }
    expect(() => parseCommand(["start"], { LOG_LEVEL: "chatty" })).toThrow(UsageError);
  });
});
