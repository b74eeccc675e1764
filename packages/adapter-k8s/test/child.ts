// Copied from packages/core/test/child.ts (test helpers are not part of the core's API).
// A real child process for tests, its stdout followed line by line: `waitFor(prefix)` resolves
// with the first line that starts with it (seen or yet to come), or rejects once the process
// exited without printing it (with its stderr, so a failure says why).
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";

export interface Child {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  stderr(): string;
  waitFor(prefix: string): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Node flags for a TypeScript fixture that imports workspace packages from source. */
export const SOURCE_EXEC_ARGV = ["--conditions=@openrtc/source", "--import", "tsx"];

export function startChild(script: string, args: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Child {
  const child = spawn(process.execPath, [...SOURCE_EXEC_ARGV, script, ...args], { stdio: ["pipe", "pipe", "pipe"], env });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (line: string) => void }[] = [];
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d.toString()));
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (line.startsWith(w.prefix)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const waitFor = (prefix: string) => {
    const seen = lines.find((l) => l.startsWith(prefix));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      waiters.push({ prefix, resolve });
      void exited.then(({ code, signal }) => reject(new Error(`child exited (code ${code}, signal ${signal}) before printing ${prefix}; stderr: ${stderr.slice(-2000)}`)));
    });
  };
  return { child, lines, stderr: () => stderr, waitFor, exited };
}
