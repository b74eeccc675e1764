// Only apps start an OpenTelemetry SDK; libraries (OpenRTC, @livekit/agents) use the API.
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, and then
// every `openrtc.session` span is exported over OTLP/HTTP with this worker's version as
// `service.version`, so a tracing backend can split calls by version.
import { NodeSDK } from "@opentelemetry/sdk-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

export interface Telemetry {
  shutdown(): Promise<void>;
}

export function startTelemetry(options: { serviceName: string; deploymentVersion: string | null }): Telemetry | undefined {
  if (!process.env.OTEL_EXPORTER_OTLP_ENDPOINT && !process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return undefined;
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      "service.name": options.serviceName,
      ...(options.deploymentVersion === null ? {} : { "service.version": options.deploymentVersion }),
    }),
    // The exporter reads the endpoint and headers from the standard OTEL_* variables.
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 500 })],
    instrumentations: [],
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}
