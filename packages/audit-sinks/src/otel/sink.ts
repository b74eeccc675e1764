import type { AnyValue, LogAttributes, Logger, LoggerProvider, SeverityNumber } from "@opentelemetry/api-logs";
import type { AuditRecord, AuditSink } from "@openrtc/core/audit";

// SeverityNumber is a runtime enum in @opentelemetry/api-logs; the values are fixed by the OTel
// log data model, so they are spelled here to keep this module free of runtime imports.
const INFO = 9 as SeverityNumber;
const WARN = 13 as SeverityNumber;

const SEVERITY_TEXT: readonly string[] = ["UNSPECIFIED", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/** Fields of every record, mapped to fixed attribute names; anything else is an extra. */
const CORE_FIELDS = new Set([
  "seq",
  "timestamp",
  "event",
  "actor",
  "target",
  "result",
  "version",
  "origin",
  "prev_hash",
  "hash",
]);

/** Nested extras deeper than this become a JSON string, so one record cannot explode into attributes. */
const MAX_FLATTEN_DEPTH = 3;

export interface OtelLogSinkOptions {
  /** Where log records go. Default: the global provider (`logs.getLoggerProvider()`), as late as each write. */
  loggerProvider?: LoggerProvider;
  loggerName?: string;
  /**
   * Severity of each log record. Default: INFO when `result` is "ok", WARN otherwise (a rejected
   * worker or a rollback is worth a look).
   */
  severity?: SeverityNumber | ((record: AuditRecord) => SeverityNumber);
  /**
   * `"event"` (default): the body is the event name, e.g. `deployment.started`.
   * `"record"`: the body is the exact JSON line (`JSON.stringify(record)`), so a copy kept by a log
   * backend can be hash-verified.
   */
  body?: "event" | "record";
  /** Sink name used in metrics (`openrtc_audit_sink_errors_total{sink}`). Default `"otel"`. */
  name?: string;
}

export interface OtelLogSink extends AuditSink {
  write(records: readonly AuditRecord[]): Promise<void>;
  /** Calls the provider's `forceFlush()` when it has one (the SDK's processors batch exports). */
  flush(): Promise<void>;
}

/** Attribute prefix of every audit field; extras sit under it too (`openrtc.audit.reason`). */
export const OTEL_AUDIT_ATTRIBUTE_PREFIX = "openrtc.audit.";

/**
 * An audit sink emitting one OpenTelemetry log record per audit record through
 * `@opentelemetry/api-logs`. It never starts an SDK: the application configures a
 * `LoggerProvider` (passed here or registered globally).
 */
export function otelLogSink(options: OtelLogSinkOptions = {}): OtelLogSink {
  const loggerName = options.loggerName ?? "@openrtc/audit";
  if (typeof loggerName !== "string" || loggerName === "") {
    throw new TypeError("otelLogSink: loggerName must be a non-empty string (default \"@openrtc/audit\")");
  }
  const bodyMode = options.body ?? "event";
  if (bodyMode !== "event" && bodyMode !== "record") {
    throw new TypeError(`otelLogSink: body must be "event" or "record", got ${JSON.stringify(bodyMode)}`);
  }
  const severity = options.severity;
  if (severity !== undefined && typeof severity !== "function" && !isSeverityNumber(severity)) {
    throw new TypeError(
      `otelLogSink: severity must be an OTel SeverityNumber (1-24) or a function of the record, got ${String(severity)}`,
    );
  }

  const providerFor = async (): Promise<LoggerProvider> =>
    options.loggerProvider ?? (await loadLogsApi()).logs.getLoggerProvider();

  return {
    name: options.name ?? "otel",
    async write(records) {
      const logger: Logger = (await providerFor()).getLogger(loggerName);
      for (const record of records) {
        const number = severityOf(record, severity);
        logger.emit({
          eventName: record.event,
          timestamp: toHrTime(record.timestamp),
          severityNumber: number,
          severityText: severityText(number),
          body: bodyMode === "record" ? JSON.stringify(record) : record.event,
          attributes: otelAuditAttributes(record),
        });
      }
    },
    async flush() {
      const provider = await providerFor();
      await forceFlushOf(provider)?.();
    },
  };
}

/** The attributes one audit record becomes (exported for tests and for custom sinks). */
export function otelAuditAttributes(record: AuditRecord): LogAttributes {
  const attributes: LogAttributes = {
    "openrtc.audit.event": record.event,
    "openrtc.audit.seq": record.seq,
    "openrtc.audit.actor": record.actor,
    "openrtc.audit.target": record.target,
    "openrtc.audit.result": record.result,
    "openrtc.audit.origin": record.origin,
    "openrtc.audit.prev_hash": record.prev_hash,
    "openrtc.audit.hash": record.hash,
  };
  // Same name as the session spans carry, so logs and traces join on it.
  if (record.version !== null && record.version !== undefined) attributes["openrtc.deployment_version"] = record.version;
  for (const [key, value] of Object.entries(record)) {
    if (CORE_FIELDS.has(key)) continue;
    flattenInto(attributes, OTEL_AUDIT_ATTRIBUTE_PREFIX + key, value, 0);
  }
  return attributes;
}

function flattenInto(out: LogAttributes, key: string, value: unknown, depth: number): void {
  if (value === undefined) return;
  if (value === null || typeof value === "string" || typeof value === "boolean") {
    out[key] = value;
  } else if (typeof value === "number") {
    out[key] = value;
  } else if (Array.isArray(value)) {
    out[key] = value.every(isScalar) ? (value as AnyValue[]) : JSON.stringify(value);
  } else if (typeof value === "object" && depth < MAX_FLATTEN_DEPTH) {
    for (const [sub, subValue] of Object.entries(value as Record<string, unknown>)) {
      flattenInto(out, `${key}.${sub}`, subValue, depth + 1);
    }
  } else {
    out[key] = JSON.stringify(value) ?? String(value);
  }
}

function isScalar(value: unknown): boolean {
  return value === null || ["string", "number", "boolean"].includes(typeof value);
}

function isSeverityNumber(value: unknown): value is SeverityNumber {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 24;
}

function severityOf(record: AuditRecord, severity: OtelLogSinkOptions["severity"]): SeverityNumber {
  if (severity === undefined) return record.result === "ok" ? INFO : WARN;
  const number = typeof severity === "function" ? severity(record) : severity;
  return isSeverityNumber(number) ? number : INFO;
}

function severityText(number: SeverityNumber): string {
  return SEVERITY_TEXT[Math.ceil(number / 4)] ?? "UNSPECIFIED";
}

/** Record timestamps are Unix seconds (possibly fractional); OTel wants [seconds, nanoseconds]. */
function toHrTime(seconds: number): [number, number] {
  const whole = Math.floor(seconds);
  return [whole, Math.round((seconds - whole) * 1e9)];
}

type Flush = () => Promise<void>;

function forceFlushOf(provider: LoggerProvider): Flush | undefined {
  const direct = (provider as { forceFlush?: unknown }).forceFlush;
  if (typeof direct === "function") return () => Promise.resolve(direct.call(provider));
  // The global provider is a proxy in front of the registered SDK provider.
  const getDelegate = (provider as { _getDelegate?: () => LoggerProvider })._getDelegate;
  if (typeof getDelegate === "function") {
    const delegate = getDelegate.call(provider);
    if (delegate !== provider) return forceFlushOf(delegate);
  }
  return undefined;
}

type LogsApi = typeof import("@opentelemetry/api-logs");
let logsApi: Promise<LogsApi> | undefined;

function loadLogsApi(): Promise<LogsApi> {
  logsApi ??= importLogsApi("@opentelemetry/api-logs");
  return logsApi;
}

/** Loads the optional peer, turning "module not found" into what to do about it. */
export async function importLogsApi(specifier: string): Promise<LogsApi> {
  try {
    return (await import(specifier)) as LogsApi;
  } catch (error) {
    if (isModuleNotFound(error)) {
      throw new Error(
        `@openrtc/audit-sinks/otel needs the OpenTelemetry logs API: install @opentelemetry/api-logs (or pass loggerProvider). ` +
          `Loading "${specifier}" failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    throw error;
  }
}

function isModuleNotFound(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND";
}
