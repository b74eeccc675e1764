import { parseArgs } from "node:util";
import { EXIT_OK, EXIT_PROBLEM, UsageError } from "./cli-command.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";
import type { RuntimeSnapshotJSON } from "./snapshot.ts";

const TOP_USAGE = `Usage: openrtc top URL... [--once] [--json] [--interval SECONDS]

Shows each worker's runtime snapshot (GET URL/snapshot from its control server): the three
deploy signals (deployment_version, draining, active_sessions) and the rest of its state.
A deploy is done when every worker reports the new version and the old ones drained to 0.

  URL          a worker's control server, e.g. http://10.0.0.7:8081 (repeat for a fleet)
  --once       print one table and exit (1 if any worker could not be read)
  --json       with --once: print the snapshots as a JSON array
  --interval   seconds between refreshes (default 2)
`;

type Row = { url: string; snapshot?: RuntimeSnapshotJSON; error?: string };

async function read(url: string, timeoutMs: number): Promise<Row> {
  try {
    const res = await fetch(new URL("/snapshot", url), { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { url, error: `HTTP ${res.status}` };
    return { url, snapshot: (await res.json()) as RuntimeSnapshotJSON };
  } catch (error) {
    return { url, error: error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error) };
  }
}

/** Renders snapshots as a fixed-width table (exported for tests and embedding). */
export function renderTop(rows: readonly Row[]): string {
  const header = ["WORKER", "VERSION", "STATE", "DRAINING", "ACTIVE", "STARTED", "FAILED", "REJECTED", "STUCK", "MEMBER"];
  const body = rows.map(({ url, snapshot: s, error }) =>
    s === undefined
      ? [url, "-", `unreachable: ${error ?? ""}`, "", "", "", "", "", "", ""]
      : [
          s.worker_id,
          s.deployment_version ?? "(untagged)",
          s.state,
          String(s.draining),
          String(s.active_sessions),
          String(s.total_sessions_started),
          String(s.total_session_failures),
          String(s.rejected_jobs),
          s.drain_stuck ? "STUCK" : "-",
          String(s.member),
        ],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  const byVersion = new Map<string, number>();
  for (const { snapshot: s } of rows) {
    if (s !== undefined) byVersion.set(s.deployment_version ?? "(untagged)", (byVersion.get(s.deployment_version ?? "(untagged)") ?? 0) + s.active_sessions);
  }
  const totals = [...byVersion].map(([v, n]) => `${v}: ${n} live`).join(", ");
  return `${[line(header), ...body.map(line)].join("\n")}\n${totals === "" ? "" : `\n${totals}\n`}`;
}

async function runTop(args: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { once: { type: "boolean" }, json: { type: "boolean" }, interval: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${TOP_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout(TOP_USAGE);
    return EXIT_OK;
  }
  if (positionals.length === 0) throw new UsageError(`name at least one worker control URL\n\n${TOP_USAGE}`);
  for (const url of positionals) {
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new UsageError(`not an http(s) URL: ${url}`);
  }
  const interval = values.interval === undefined ? 2 : Number(values.interval);
  if (!(interval > 0)) throw new UsageError(`--interval must be a positive number of seconds, got ${values.interval}`);
  if (values.json === true && values.once !== true) throw new UsageError("--json goes with --once");

  const poll = () => Promise.all(positionals.map((u) => read(u, Math.max(500, interval * 1000))));
  if (values.once === true) {
    const rows = await poll();
    io.stdout(values.json === true ? `${JSON.stringify(rows.map((r) => r.snapshot ?? { url: r.url, error: r.error }))}\n` : renderTop(rows));
    return rows.every((r) => r.snapshot !== undefined) ? EXIT_OK : EXIT_PROBLEM;
  }
  for (;;) {
    const rows = await poll();
    io.stdout(`\x1b[2J\x1b[H${new Date().toISOString()}\n\n${renderTop(rows)}`);
    await new Promise((resolve) => setTimeout(resolve, interval * 1000));
  }
}

export const topCommand: CliCommand = { summary: "watch workers' deploy signals (version, draining, live calls)", usage: TOP_USAGE, run: runTop };
