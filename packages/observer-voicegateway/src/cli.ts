/**
 * `openrtc compare --base v1.0.0 --candidate v2.0.0 [--json]`: prints compare's table and verdict.
 * Exit codes: 0 promote, 1 roll back, 2 usage, 3 escalate, 4 insufficient data.
 *
 * Sources (one is needed): `--collector URL` (an OpenRTC collector, `createCollectorServer`; or
 * `$OPENRTC_OBSERVER_COLLECTOR_URL`), `--records FILE` (repeatable; a bucket export JSON, or JSON
 * lines of call records). Several sources merge, as buckets do.
 *
 * `runCompare(argv)` is the whole command, so the core `openrtc` CLI can route `compare` here.
 */
import { readFile } from "node:fs/promises";
import { isCallRecord } from "./call.ts";
import { compare, CompareOptionsError, formatComparison, type CompareOptions } from "./compare.ts";
import { OPENRTC_COLLECTOR_TOKEN_ENV, OPENRTC_COLLECTOR_URL_ENV } from "./observer.ts";
import { EXPORT_FORMAT, InMemoryStore } from "./store.ts";

export const USAGE_EXIT_CODE = 2;

export const COMPARE_USAGE = `usage: openrtc compare --base VERSION --candidate VERSION [--json]
                       [--collector URL] [--token TOKEN] [--records FILE]...
                       [--tenant T] [--agent A] [--confidence 0.98] [--tolerance 0.1]
                       [--hard-latency 0.2] [--failure-tolerance 0.02] [--min-calls 30]
exit codes: 0 promote, 1 roll back, 2 usage, 3 escalate, 4 insufficient data`;

export interface CompareIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  fetch: typeof fetch;
}

class UsageError extends Error {}

const NUMERIC: Record<string, keyof CompareOptions> = {
  "--confidence": "confidence",
  "--tolerance": "tolerance",
  "--hard-latency": "hardLatencyRegression",
  "--failure-tolerance": "failureRateTolerance",
  "--min-calls": "minCalls",
  "--min-samples": "minSamples",
  "--outlier-factor": "outlierFactor",
};

interface Parsed {
  options: CompareOptions;
  json: boolean;
  collector: string | undefined;
  token: string | undefined;
  records: string[];
}

function parse(argv: readonly string[], env: CompareIO["env"]): Parsed {
  const options: Partial<CompareOptions> = {};
  let json = false;
  let collector: string | undefined;
  let token: string | undefined;
  const records: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith("--"))) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag === "--json") json = true;
    else if (flag === "--base") options.base = value();
    else if (flag === "--candidate") options.candidate = value();
    else if (flag === "--tenant") options.tenant = value();
    else if (flag === "--agent") options.agent = value();
    else if (flag === "--collector") collector = value();
    else if (flag === "--token") token = value();
    else if (flag === "--records") records.push(value());
    else if (flag === "--correction") {
      const v = value();
      if (v !== "bonferroni" && v !== "none") throw new UsageError(`--correction must be bonferroni or none`);
      options.correction = v;
    } else if (flag in NUMERIC) {
      const raw = value();
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n)) throw new UsageError(`${flag} needs a number, got ${JSON.stringify(raw)}`);
      (options as Record<string, unknown>)[NUMERIC[flag] as string] = n;
    } else if (flag === "-h" || flag === "--help") throw new UsageError("");
    else throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
  }
  if (options.base === undefined || options.candidate === undefined) throw new UsageError("--base and --candidate are required");
  if (options.base === options.candidate) throw new UsageError(`--base and --candidate are the same version (${options.base})`);
  if (collector === undefined && records.length === 0) collector = env[OPENRTC_COLLECTOR_URL_ENV] || undefined;
  if (collector === undefined && records.length === 0) throw new UsageError(`no data source: give --collector URL or --records FILE (or set ${OPENRTC_COLLECTOR_URL_ENV})`);
  return { options: options as CompareOptions, json, collector, token: token ?? (env[OPENRTC_COLLECTOR_TOKEN_ENV] || undefined), records };
}

/** Loads a bucket export, or JSON lines of call records, into `store`. */
export function loadRecordsText(store: InMemoryStore, text: string, name: string): void {
  const trimmed = text.trim();
  if (trimmed === "") throw new Error(`${name} is empty`);
  if (trimmed.startsWith("{") && trimmed.includes(EXPORT_FORMAT)) {
    try {
      store.load(JSON.parse(trimmed));
      return;
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw new Error(`${name}: ${(error as Error).message}`);
      // not one JSON document: fall through to JSON lines
    }
  }
  const lines = trimmed.split("\n");
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`${name}:${index + 1}: not JSON`);
    }
    if (!isCallRecord(value)) throw new Error(`${name}:${index + 1}: not a call record (nor a ${EXPORT_FORMAT} export)`);
    store.record(value);
  });
}

export async function runCompare(argv: readonly string[], io: Partial<CompareIO> = {}): Promise<number> {
  const out = io.stdout ?? ((t: string) => process.stdout.write(t));
  const err = io.stderr ?? ((t: string) => process.stderr.write(t));
  const env = io.env ?? process.env;
  const fetchImpl = io.fetch ?? fetch;
  let parsed: Parsed;
  try {
    parsed = parse(argv, env);
  } catch (error) {
    const message = (error as Error).message;
    err(`${message === "" ? "" : `openrtc compare: ${message}\n`}${COMPARE_USAGE}\n`);
    return USAGE_EXIT_CODE;
  }
  const store = new InMemoryStore();
  try {
    if (parsed.collector !== undefined) {
      const url = new URL("/v1/openrtc/buckets", parsed.collector);
      const response = await fetchImpl(url, { headers: parsed.token ? { authorization: `Bearer ${parsed.token}` } : {}, signal: AbortSignal.timeout(15_000) });
      if (!response.ok) throw new Error(`collector answered HTTP ${response.status} for ${url.href}`);
      store.load(await response.json());
    }
    for (const file of parsed.records) loadRecordsText(store, await readFile(file, "utf8"), file);
  } catch (error) {
    err(`openrtc compare: could not read the data: ${(error as Error).message}\n`);
    // Not a usage error, but no verdict could be formed: "insufficient data" is the honest code.
    return 4;
  }
  let result;
  try {
    result = compare(store, parsed.options);
  } catch (error) {
    if (error instanceof CompareOptionsError) {
      err(`openrtc compare: ${error.message}\n${COMPARE_USAGE}\n`);
      return USAGE_EXIT_CODE;
    }
    throw error;
  }
  out(parsed.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatComparison(result)}\n`);
  return result.exitCode;
}
