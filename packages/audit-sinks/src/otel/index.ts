export { OTEL_AUDIT_ATTRIBUTE_PREFIX, otelAuditAttributes, otelLogSink } from "./sink.ts";
export type { OtelLogSink, OtelLogSinkOptions } from "./sink.ts";
