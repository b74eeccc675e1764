import { describe, expect, it } from "vitest";
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { ObserverMetrics, OTEL_METRIC_NAMES } from "./otel.ts";
import { seededRandom } from "./reservoir.ts";
import { syntheticCalls } from "./testing/synthetic.ts";

describe("OTel metrics through @opentelemetry/api", () => {
  it("records calls, latencies, tokens and cost with bounded tenant cardinality", async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    const provider = new MeterProvider({ readers: [reader] });
    const m = new ObserverMetrics({ meter: provider.getMeter("test"), maxTenants: 2 });
    const random = seededRandom(1);
    for (const t of ["a", "b", "c", "d"]) for (const c of syntheticCalls({ version: "v2", tenant: t }, 2, random)) m.recordCall(c);
    m.recordShipper("ingest", { type: "sent", rows: 5 });
    m.recordShipper("ingest", { type: "dropped", rows: 2, reason: "buffer_full" });
    await reader.forceFlush();
    const metrics = exporter.getMetrics().flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics));
    const byName = new Map(metrics.map((x) => [x.descriptor.name, x]));
    for (const name of Object.values(OTEL_METRIC_NAMES)) expect(byName.has(name), name).toBe(true);
    const tenants = new Set(byName.get(OTEL_METRIC_NAMES.calls)!.dataPoints.map((d) => d.attributes["openrtc.tenant"]));
    expect(tenants).toEqual(new Set(["a", "b", "other"]));
    expect(byName.get(OTEL_METRIC_NAMES.calls)!.dataPoints[0]!.attributes["openrtc.deployment_version"]).toBe("v2");
    await provider.shutdown();
  });
});
