#!/usr/bin/env node
// `openrtc-compare`: the same command as `openrtc compare` (see cli.ts for flags and exit codes).
import { runCompare } from "./cli.ts";

runCompare(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`openrtc compare: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 70;
  },
);
