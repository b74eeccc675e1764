// `openrtc compare`: "is v2 better?" lives in @openrtc/observer-voicegateway (it depends on core,
// so core cannot depend on it); this command loads it when installed and says how to get it when not.
import type { CliCommand, CliIo } from "./cli-command.ts";
import { EXIT_USAGE } from "./cli-command.ts";

/** The observer's CLI module. A variable, so bundlers and the type checker do not pull it in. */
const OBSERVER_CLI = "@openrtc/observer-voicegateway/cli";

interface ObserverCli {
  runCompare(argv: readonly string[], io: { stdout: (t: string) => void; stderr: (t: string) => void; env: Readonly<Record<string, string | undefined>> }): Promise<number>;
}

/** Loads the observer's CLI; `load` is replaceable for tests. */
export function compareCommand(load: () => Promise<unknown> = () => import(OBSERVER_CLI)): CliCommand {
  return {
    summary: "compare two versions' calls (latency, failures, cost): promote, roll back, escalate",
    usage: "Usage: openrtc compare --base VERSION --candidate VERSION [--json] [--collector URL | --records FILE ...]\n(provided by @openrtc/observer-voicegateway; exit 0 promote, 1 roll back, 2 usage, 3 escalate, 4 insufficient data)\n",
    async run(args: string[], io: CliIo): Promise<number> {
      let mod: Partial<ObserverCli> | undefined;
      try {
        mod = (await load()) as Partial<ObserverCli>;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") throw error;
      }
      if (typeof mod?.runCompare !== "function") {
        io.stderr("openrtc compare: needs @openrtc/observer-voicegateway (pnpm add @openrtc/observer-voicegateway), which collects the calls it compares\n");
        return EXIT_USAGE;
      }
      return mod.runCompare(args, { stdout: io.stdout, stderr: io.stderr, env: io.env });
    },
  };
}
