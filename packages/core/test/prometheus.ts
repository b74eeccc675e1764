// Test harness for the Prometheus tools: finds promtool/prometheus on PATH (failing with
// the setup command when they are missing, so a machine without them never passes
// silently), runs promtool, and starts a real Prometheus server on a free loopback port.
import { spawn } from "node:child_process";
import { accessSync, constants, rmSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// DESIGN.md "Metrics": the contract names, written out here (not read from the code) so a
// renamed metric fails the tests instead of silently changing the contract.
export const CONTRACT_METRICS = [
  "openrtc_worker_info",
  "openrtc_draining",
  "openrtc_accepting",
  "openrtc_active_sessions",
  "openrtc_sessions_started_total",
  "openrtc_sessions_ended_total",
  "openrtc_session_duration_seconds",
  "openrtc_jobs_rejected_total",
  "openrtc_drain_stuck",
  "openrtc_dropped_sessions_total",
  "openrtc_audit_events_total",
  "openrtc_audit_sink_errors_total",
] as const;

export const OBSERVABILITY_DIR = resolve(fileURLToPath(new URL("../observability", import.meta.url)));
export const RULES_FILE = join(OBSERVABILITY_DIR, "prometheus", "openrtc.rules.yml");
export const RULES_TEST_FILE = join(OBSERVABILITY_DIR, "prometheus", "openrtc.rules.test.yml");
export const DASHBOARD_FILE = join(OBSERVABILITY_DIR, "grafana", "openrtc-deploy.json");

export interface DashboardQuery {
  panel: string;
  expr: string;
}

/** Every query of the shipped dashboard, with the title of the panel it belongs to. */
export async function readDashboardQueries(): Promise<DashboardQuery[]> {
  interface Panel {
    type: string;
    title: string;
    targets?: Array<{ expr?: string }>;
    panels?: Panel[];
  }
  const dashboard = JSON.parse(await readFile(DASHBOARD_FILE, "utf8")) as { panels: Panel[] };
  return dashboard.panels
    .flatMap((panel) => [panel, ...(panel.panels ?? [])])
    .flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr ?? "" })));
}

/** A Grafana query as plain PromQL: Grafana's range variables become a literal duration. */
export function grafanaToPromQL(expr: string, duration = "5m"): string {
  return expr.replace(/\$__(?:rate_interval|range|interval)\b/g, duration);
}

export class ToolMissingError extends Error {
  override name = "ToolMissingError";
}

/** Absolute path of `tool` on PATH, or a ToolMissingError that says how to install it. */
export function requireTool(tool: "promtool" | "prometheus", path = process.env.PATH ?? ""): string {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  throw new ToolMissingError(
    `${tool} is not installed (not found on PATH). These tests run the real Prometheus tools; ` +
      "install them with `pnpm setup` (or `bash scripts/dev.sh setup`), which installs Debian's " +
      "`prometheus` package, or `apt-get install -y prometheus` yourself.",
  );
}

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool to completion and collects its output; never rejects on a non-zero exit. */
export function runTool(bin: string, args: readonly string[], options: { cwd?: string; input?: string } = {}): Promise<ToolResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, args, { cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] });
    // A tool that exits without reading its input must not crash the test with EPIPE.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input ?? "");
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

/** A port that was free a moment ago on 127.0.0.1 (the caller retries if it is taken). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === "object") resolvePromise(address.port);
        else reject(new Error("could not read the port of a probe server"));
      });
    });
  });
}

export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export interface PromRule {
  name: string;
  type: "recording" | "alerting";
  health: string;
  lastError?: string;
  state?: string;
}

export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: "pending" | "firing" | "inactive";
  value: string;
}

export interface WaitOptions {
  /** Give up after this long; a bound so a broken setup fails instead of hanging. */
  timeoutMs?: number;
  intervalMs?: number;
}

export interface PrometheusServer {
  url: string;
  dir: string;
  /** Instant query; throws on an API error. */
  query(expr: string): Promise<PromSample[]>;
  /** Polls `expr` until `accept(result)` is true; throws with the last result on timeout. */
  waitFor(expr: string, accept: (samples: PromSample[]) => boolean, options?: WaitOptions): Promise<PromSample[]>;
  rules(): Promise<PromRule[]>;
  alerts(): Promise<PromAlert[]>;
  /** Polls the alerts API until `accept` is true; throws with the last alerts on timeout. */
  waitForAlerts(accept: (alerts: PromAlert[]) => boolean, options?: WaitOptions): Promise<PromAlert[]>;
  /** Output Prometheus wrote so far (for failure messages). */
  log(): string;
  /** Stops the server (SIGTERM, then SIGKILL) and deletes its storage; idempotent. */
  stop(): Promise<void>;
}

export interface StartPrometheusOptions {
  /** host:port of each /metrics endpoint to scrape. */
  targets: readonly string[];
  ruleFiles?: readonly string[];
  jobName?: string;
  scrapeInterval?: string;
  evaluationInterval?: string;
  /** Default: the scrape interval. */
  scrapeTimeout?: string;
  /**
   * `honor_labels: true`: labels the target exposes (e.g. `instance`) win over the target labels,
   * so one endpoint can stand in for many workers (the fleet bench's synthetic exporters).
   */
  honorLabels?: boolean;
  readyTimeoutMs?: number;
}

const LOG_LIMIT = 64 * 1024;

interface ApiEnvelope<T> {
  status: "success" | "error";
  data: T;
  error?: string;
  errorType?: string;
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as ApiEnvelope<T>;
  if (body.status !== "success") {
    throw new Error(`Prometheus API ${url} failed: ${body.errorType ?? "error"}: ${body.error ?? response.status}`);
  }
  return body.data;
}

async function poll<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  describe: (last: T | undefined, error: unknown) => string,
  { timeoutMs = 20_000, intervalMs = 200 }: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await read();
      lastError = undefined;
      if (accept(last)) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) throw new Error(describe(last, lastError));
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function configYaml(options: StartPrometheusOptions): string {
  const rules = (options.ruleFiles ?? []).map((file) => `  - ${JSON.stringify(file)}`).join("\n");
  const targets = options.targets.map((target) => JSON.stringify(target)).join(", ");
  return [
    "global:",
    `  scrape_interval: ${options.scrapeInterval ?? "1s"}`,
    `  scrape_timeout: ${options.scrapeTimeout ?? options.scrapeInterval ?? "1s"}`,
    `  evaluation_interval: ${options.evaluationInterval ?? "1s"}`,
    rules === "" ? "rule_files: []" : `rule_files:\n${rules}`,
    "scrape_configs:",
    `  - job_name: ${JSON.stringify(options.jobName ?? "openrtc")}`,
    "    metrics_path: /metrics",
    ...(options.honorLabels === true ? ["    honor_labels: true"] : []),
    `    static_configs:\n      - targets: [${targets}]`,
    "",
  ].join("\n");
}

/** Starts a real Prometheus on 127.0.0.1 with its own config and storage in a temp dir. */
export async function startPrometheus(options: StartPrometheusOptions): Promise<PrometheusServer> {
  const bin = requireTool("prometheus");
  let lastFailure: Error | undefined;
  // A free port can be taken between probing and binding; a couple of retries absorb that.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(bin, options);
    } catch (error) {
      lastFailure = error as Error;
      if (!/address already in use/i.test(lastFailure.message)) throw lastFailure;
    }
  }
  throw lastFailure ?? new Error("prometheus did not start");
}

async function startOnce(bin: string, options: StartPrometheusOptions): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), "openrtc-prometheus-"));
  const configFile = join(dir, "prometheus.yml");
  await writeFile(configFile, configYaml(options));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const append = (chunk: string) => {
    output = (output + chunk).slice(-LOG_LIMIT);
  };
  child.stdout.setEncoding("utf8").on("data", append);
  child.stderr.setEncoding("utf8").on("data", append);
  let exited = false;
  // Last resort if the test process ends without running its teardown: never leave a server.
  const killOnExit = (): void => {
    if (!exited) child.kill("SIGKILL");
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort: the process is ending
    }
  };
  process.once("exit", killOnExit);
  const exit = new Promise<void>((r) =>
    child.on("close", () => {
      exited = true;
      process.off("exit", killOnExit);
      r();
    }),
  );
  child.on("error", (error) => append(`spawn error: ${error.message}\n`));

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (!exited) {
        child.kill("SIGTERM");
        const killTimer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exit;
        clearTimeout(killTimer);
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  try {
    await poll(
      async () => {
        if (exited) return -1;
        const response = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) });
        return response.status;
      },
      (status) => status === 200 || status === -1,
      () => `prometheus at ${url} was not ready within ${options.readyTimeoutMs ?? 30_000} ms`,
      { timeoutMs: options.readyTimeoutMs ?? 30_000, intervalMs: 100 },
    );
    if (exited) throw new Error("exited");
  } catch (error) {
    await stop();
    const reason = (error as Error).message === "exited" ? "prometheus exited during startup" : (error as Error).message;
    throw new Error(`${reason}; its output:\n${output}`);
  }

  const query = async (expr: string): Promise<PromSample[]> => {
    const data = await getJson<{ resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
      `${url}/api/v1/query?query=${encodeURIComponent(expr)}`,
    );
    if (data.resultType !== "vector") throw new Error(`query ${expr} returned a ${data.resultType}, expected a vector`);
    return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  const alerts = async (): Promise<PromAlert[]> => (await getJson<{ alerts: PromAlert[] }>(`${url}/api/v1/alerts`)).alerts;

  return {
    url,
    dir,
    query,
    waitFor: (expr, accept, waitOptions = {}) =>
      poll(
        () => query(expr),
        accept,
        (last, error) =>
          `timed out waiting on ${expr}; last result ${JSON.stringify(last)}${error ? `, last error ${String(error)}` : ""}`,
        waitOptions,
      ),
    rules: async () => {
      const data = await getJson<{ groups: Array<{ rules: PromRule[] }> }>(`${url}/api/v1/rules`);
      return data.groups.flatMap((group) => group.rules);
    },
    alerts,
    waitForAlerts: (accept, waitOptions = {}) =>
      poll(
        alerts,
        accept,
        (last, error) => `timed out waiting on alerts; last ${JSON.stringify(last)}${error ? `, last error ${String(error)}` : ""}`,
        waitOptions,
      ),
    log: () => output,
    stop,
  };
}
