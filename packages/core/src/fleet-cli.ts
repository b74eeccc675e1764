// `openrtc fleet status|watch|wait`: the deploy's state across the fleet, for people and pipelines.
import { parseArgs } from "node:util";
import { EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, UsageError } from "./cli-command.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";
import { FleetTracker, fleetReportJSON, judgeFleet, renderFleet, type FleetReport } from "./fleet.ts";
import { directSource, normalizeWorkerUrl, prometheusSource, readWorkersFile, resolveSrvTargets, type FleetSource } from "./fleet-sources.ts";
import { checkAuditLocation } from "./fleet-page-audit.ts";
import { isLoopbackHost } from "./control-server.ts";
import { createDeployPage, listenDeployPage } from "./fleet-page.ts";

/** `fleet wait` gave up: the timeout passed before the deploy was done. */
export const EXIT_TIMEOUT = 124;

export const FLEET_USAGE = `Usage: openrtc fleet <status|watch|wait|serve> SOURCE [options]

Is the deploy done? Reads every worker and judges the deploy by three facts: every worker
reports the new version, the old-version workers drained to zero and exited, no call dropped.

  status                 print the fleet once (exit 1 if a call was dropped or a drain is stuck)
  watch                  redraw it every --interval until interrupted
  wait --version V       a CI/CD gate: poll until the deploy to V is done
       --timeout D       give up after D (default 1h)
                         exit 0 done; 1 a call dropped or a drain stuck past its timeout
                         (the reason is printed); 2 usage; 124 timeout
  serve                  a live deploy page for a browser: the fleet table, live calls per
                         version over time, the three facts, the audit trail; prints its URL
       --listen HOST:PORT  where to serve it (default 127.0.0.1:8090; port 0 picks a free one)
       --audit PATH      the audit log to show and verify: FILE, DIR or s3://BUCKET/PREFIX
                         (s3:// needs @openrtc/audit-sinks and @aws-sdk/client-s3 installed)

SOURCE (one of; a file and SRV are re-read on every poll):
  --workers URL,...      workers' control servers (http://host:port or host:port)
  --workers-file FILE    one URL a line (# comments)
  --srv NAME             DNS SRV records, e.g. _openrtc._tcp.workers.svc.cluster.local
  --prometheus URL       a Prometheus scraping the workers, with openrtc.rules.yml loaded

Options:
  --version V            the version the deploy goes to (default: the one version accepting calls)
  --token T              bearer token for GET /sessions (call ages); default $OPENRTC_DRAIN_TOKEN
  --interval D           time between polls (default 2s)
  --drain-timeout D      also count a drain older than D with calls live as stuck
  --gone-after N         polls a once-seen worker must miss to count as gone (default 2)
  --window D             Prometheus: how far back exited workers are remembered (default 15m)
  --job NAME             Prometheus: only this scrape job
  --dns HOST[:PORT]      --srv: ask this DNS server (default: the system's)
  --per-worker           list every worker
  --json                 print the report as JSON (wait: the final report)

A worker last seen draining with zero calls that disappears exited clean; one that disappears
holding calls dropped them ("vanished with sessions"); one never reached is unreachable and keeps
the deploy from being done. Durations: 500ms, 10s, 5m, 1h (a bare number is seconds).
`;

/** `500ms`, `10s`, `5m`, `1h`, `1h30m`, or bare seconds → milliseconds. */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let pos = 0;
  for (let m = re.exec(t); m !== null; m = re.exec(t)) {
    total += Number(m[1]) * (unit[m[2] as string] ?? 0);
    pos = re.lastIndex;
  }
  if (t === "" || pos !== t.length) throw new UsageError(`not a duration: ${JSON.stringify(text)} (use e.g. 500ms, 10s, 5m, 1h)`);
  return total;
}

export interface FleetRunDeps {
  /** Unix seconds. */
  clock?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** `serve` stops when this settles; default: on SIGINT or SIGTERM. */
  stop?: Promise<unknown>;
}

interface Parsed {
  sub: "status" | "watch" | "wait" | "serve";
  source: FleetSource;
  target?: string;
  timeoutMs: number;
  intervalMs: number;
  drainTimeoutSeconds?: number;
  goneAfter: number;
  json: boolean;
  perWorker: boolean;
  listen: { host: string; port: number };
  audit?: string;
}

/** `127.0.0.1:8090`, `[::1]:8090`, `0.0.0.0:0` → host and port. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (m === null || port > 65535) throw new UsageError(`--listen: expected HOST:PORT (e.g. 127.0.0.1:8090, [::1]:8090, 0.0.0.0:8090), got ${JSON.stringify(text)}`);
  return { host: (m[1] ?? m[2]) as string, port };
}

function parse(args: string[], io: CliIo): Parsed | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        workers: { type: "string", multiple: true },
        "workers-file": { type: "string" },
        srv: { type: "string" },
        dns: { type: "string" },
        prometheus: { type: "string" },
        version: { type: "string" },
        token: { type: "string" },
        timeout: { type: "string" },
        interval: { type: "string" },
        "drain-timeout": { type: "string" },
        "gone-after": { type: "string" },
        window: { type: "string" },
        job: { type: "string" },
        json: { type: "boolean" },
        "per-worker": { type: "boolean" },
        listen: { type: "string" },
        audit: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${FLEET_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help === true || positionals[0] === "help") return "help";
  const sub = positionals[0];
  if (sub !== "status" && sub !== "watch" && sub !== "wait" && sub !== "serve") throw new UsageError(`${sub === undefined ? "name a subcommand" : `unknown subcommand "${sub}"`}: status, watch, wait or serve\n\n${FLEET_USAGE}`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument: ${positionals[1]}`);
  const given = [values.workers, values["workers-file"], values.srv, values.prometheus].filter((v) => v !== undefined).length;
  if (given !== 1) throw new UsageError(`name exactly one source: --workers, --workers-file, --srv or --prometheus\n\n${FLEET_USAGE}`);
  const token = values.token ?? (io.env.OPENRTC_DRAIN_TOKEN === "" ? undefined : io.env.OPENRTC_DRAIN_TOKEN);
  const tokenOpt = token === undefined ? {} : { token };
  let source: FleetSource;
  if (values.workers !== undefined) {
    let urls: string[];
    try {
      urls = values.workers.flatMap((w) => w.split(",")).filter((w) => w.trim() !== "").map(normalizeWorkerUrl);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    if (urls.length === 0) throw new UsageError("--workers names no worker");
    source = directSource({ targets: () => Promise.resolve(urls), ...tokenOpt });
  } else if (values["workers-file"] !== undefined) {
    const file = values["workers-file"];
    source = directSource({ targets: () => readWorkersFile(file), ...tokenOpt });
  } else if (values.srv !== undefined) {
    const name = values.srv;
    const servers = values.dns === undefined ? undefined : [values.dns];
    source = directSource({ targets: () => resolveSrvTargets(name, servers === undefined ? {} : { servers }), ...tokenOpt });
  } else {
    const url = values.prometheus as string;
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new UsageError(`--prometheus: not an http(s) URL: ${url}`);
    if (values.window !== undefined && !/^\d+(ms|s|m|h|d|w|y)$/.test(values.window)) throw new UsageError(`--window: not a PromQL duration: ${values.window}`);
    source = prometheusSource({ url, ...(values.window === undefined ? {} : { window: values.window }), ...(values.job === undefined ? {} : { job: values.job }), ...tokenOpt });
  }
  if (sub === "wait" && values.version === undefined) throw new UsageError(`wait needs --version (the version the deploy goes to)\n\n${FLEET_USAGE}`);
  if (sub !== "wait" && values.timeout !== undefined) throw new UsageError("--timeout goes with wait");
  const intervalMs = values.interval === undefined ? 2000 : parseDuration(values.interval);
  if (!(intervalMs > 0)) throw new UsageError("--interval must be positive");
  const timeoutMs = values.timeout === undefined ? 3_600_000 : parseDuration(values.timeout);
  const goneAfter = values["gone-after"] === undefined ? 2 : Number(values["gone-after"]);
  if (!Number.isInteger(goneAfter) || goneAfter < 1) throw new UsageError(`--gone-after must be a whole number ≥ 1, got ${values["gone-after"]}`);
  if (values.json === true && (sub === "watch" || sub === "serve")) throw new UsageError("--json goes with status or wait");
  if (sub !== "serve") {
    for (const flag of ["listen", "audit"] as const) if (values[flag] !== undefined) throw new UsageError(`--${flag} goes with serve`);
  } else if (values["per-worker"] === true) throw new UsageError("--per-worker goes with status, watch or wait (the page lists every worker)");
  const listen = values.listen === undefined ? { host: "127.0.0.1", port: 8090 } : parseListen(values.listen);
  if (values.audit !== undefined) {
    const problem = checkAuditLocation(values.audit);
    if (problem !== null) throw new UsageError(`--audit: ${problem}`);
  }
  return {
    sub,
    source,
    ...(values.version === undefined ? {} : { target: values.version }),
    timeoutMs,
    intervalMs,
    ...(values["drain-timeout"] === undefined ? {} : { drainTimeoutSeconds: parseDuration(values["drain-timeout"]) / 1000 }),
    goneAfter,
    json: values.json === true,
    perWorker: values["per-worker"] === true,
    listen,
    ...(values.audit === undefined ? {} : { audit: values.audit }),
  };
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `openrtc fleet`; `deps` lets tests drive the clock. */
export async function runFleet(args: string[], io: CliIo, deps: FleetRunDeps = {}): Promise<number> {
  const p = parse(args, io);
  if (p === "help") {
    io.stdout(FLEET_USAGE);
    return EXIT_OK;
  }
  const clock = deps.clock ?? (() => Date.now() / 1000);
  const sleep = deps.sleep ?? defaultSleep;
  const tracker = new FleetTracker({ goneAfter: p.goneAfter });
  const poll = async (): Promise<FleetReport> => {
    const readings = await p.source.read();
    const now = clock();
    tracker.update(readings, now);
    return judgeFleet(tracker.list(), { now, ...(p.target === undefined ? {} : { target: p.target }), ...(p.drainTimeoutSeconds === undefined ? {} : { drainTimeoutSeconds: p.drainTimeoutSeconds }) });
  };
  const print = (report: FleetReport) => io.stdout(p.json ? `${JSON.stringify(fleetReportJSON(report))}\n` : renderFleet(report, { perWorker: p.perWorker }));

  if (p.sub === "serve") return serve(p, io, deps.stop);
  if (p.sub === "status") {
    let report: FleetReport;
    try {
      report = await poll();
    } catch (error) {
      io.stderr(`openrtc fleet: could not read ${p.source.description}: ${(error as Error).message}\n`);
      return EXIT_USAGE;
    }
    print(report);
    return report.status === "dropped" || report.status === "stuck" ? EXIT_PROBLEM : EXIT_OK;
  }
  if (p.sub === "watch") {
    for (;;) {
      try {
        const report = await poll();
        io.stdout(`\x1b[2J\x1b[H${renderFleet(report, { perWorker: p.perWorker })}`);
      } catch (error) {
        io.stdout(`\x1b[2J\x1b[Hopenrtc fleet: could not read ${p.source.description}: ${(error as Error).message}\n`);
      }
      await sleep(p.intervalMs);
    }
  }
  // wait
  const started = clock();
  let last: FleetReport | undefined;
  let lastError: string | undefined;
  for (;;) {
    try {
      last = await poll();
      lastError = undefined;
      if (last.status === "done") {
        if (p.json) print(last);
        else io.stdout(`openrtc fleet wait: deploy to ${p.target} done: ${last.totals.workers - last.versions.reduce((n, v) => n + v.exited, 0)} worker(s) on ${p.target}, old versions drained and exited, no call dropped\n`);
        return EXIT_OK;
      }
      if (last.status === "dropped" || last.status === "stuck") {
        if (p.json) print(last);
        else io.stdout(renderFleet(last, { perWorker: p.perWorker }));
        io.stderr(`openrtc fleet wait: ${last.status === "dropped" ? "a call was dropped" : "a drain is stuck past its timeout"}: ${last.reasons[0] ?? ""}\n`);
        return EXIT_PROBLEM;
      }
    } catch (error) {
      lastError = (error as Error).message;
    }
    const elapsedMs = (clock() - started) * 1000;
    if (elapsedMs >= p.timeoutMs) {
      if (last !== undefined) {
        if (p.json) print(last);
        else io.stdout(renderFleet(last, { perWorker: p.perWorker }));
      }
      const why = lastError !== undefined ? `could not read ${p.source.description}: ${lastError}` : (last?.reasons.join("; ") ?? "no report");
      io.stderr(`openrtc fleet wait: timed out after ${Math.round(elapsedMs / 1000)}s, deploy to ${p.target} not done: ${why}\n`);
      return EXIT_TIMEOUT;
    }
    await sleep(Math.min(p.intervalMs, Math.max(1, p.timeoutMs - elapsedMs)));
  }
}

/** Until a signal: the interrupt is how a person stops it, so both end with exit 0. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
      resolve(signal);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}

async function serve(p: Parsed, io: CliIo, stop: Promise<unknown> | undefined): Promise<number> {
  const page = createDeployPage({
    source: p.source,
    intervalMs: p.intervalMs,
    goneAfter: p.goneAfter,
    ...(p.target === undefined ? {} : { target: p.target }),
    ...(p.drainTimeoutSeconds === undefined ? {} : { drainTimeoutSeconds: p.drainTimeoutSeconds }),
    ...(p.audit === undefined ? {} : { audit: p.audit }),
  });
  let served;
  try {
    served = await listenDeployPage(page, p.listen);
  } catch (error) {
    page.close();
    const e = error as NodeJS.ErrnoException;
    const why = e.code === "EADDRINUSE" ? "the address is in use" : e.code === "EADDRNOTAVAIL" ? "no such local address" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new UsageError(`serve: cannot listen on ${p.listen.host}:${p.listen.port}: ${why}`);
  }
  const stopped = stop ?? untilSignal();
  io.stdout(`deploy page: ${served.url}/\n`);
  if (!isLoopbackHost(p.listen.host)) {
    io.stderr(`openrtc fleet serve: listening beyond loopback: the page has no login, so anyone who can reach ${p.listen.host}:${p.listen.port} sees the fleet, the tenants of stuck calls and the audit trail\n`);
  }
  void page.ready.then(() => {
    const audit = page.state().audit as { error?: string | null } | null;
    if (audit?.error) io.stderr(`openrtc fleet serve: audit trail: ${audit.error} (the page says so and shows the fleet)\n`);
  });
  await stopped;
  page.close();
  await served.close();
  return EXIT_OK;
}

export const fleetCommand: CliCommand = {
  summary: "is the deploy done? the fleet per version (status, watch, wait as a CI gate, serve a live page)",
  usage: FLEET_USAGE,
  run: (args, io) => runFleet(args, io),
};
