import { logs } from "@opentelemetry/api-logs";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import type { AuditRecord } from "@openrtc/core/audit";
import { afterEach, describe, expect, it } from "vitest";
import { importLogsApi, otelAuditAttributes, otelLogSink } from "./sink.ts";

function record(seq: number, extra: Record<string, unknown> = {}): AuditRecord {
  return {
    seq,
    timestamp: 1_763_800_000.25 + seq,
    event: "deployment.started",
    actor: "ci",
    target: "pool/agents",
    result: "ok",
    version: "v2",
    ...extra,
    origin: "host-a:1",
    prev_hash: `prev${seq}`,
    hash: `hash${seq}`,
  };
}

function sdk() {
  const exporter = new InMemoryLogRecordExporter();
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ "service.name": "audit-test" }),
    processors: [new SimpleLogRecordProcessor({ exporter })],
  });
  return { exporter, provider };
}

afterEach(() => {
  logs.disable();
});

describe("otelLogSink", () => {
  it("emits one log record per audit record with its attributes, timestamp and severity", async () => {
    const { exporter, provider } = sdk();
    const sink = otelLogSink({ loggerProvider: provider });
    const records = [
      record(0, { reason: "membership", detail: { code: 7, tags: ["a", "b"] } }),
      record(1, { result: "rejected" }),
      record(2, { version: null }),
    ];
    await sink.write(records);
    await sink.flush();
    const out = exporter.getFinishedLogRecords();
    expect(out).toHaveLength(3);
    const [first, second, third] = out;
    expect(first?.instrumentationScope.name).toBe("@openrtc/audit");
    expect(first?.body).toBe("deployment.started");
    expect(first?.eventName).toBe("deployment.started");
    expect(first?.hrTime).toEqual([1_763_800_000, 250_000_000]);
    expect(first?.severityNumber).toBe(9);
    expect(first?.severityText).toBe("INFO");
    expect(first?.attributes).toEqual({
      "openrtc.audit.event": "deployment.started",
      "openrtc.audit.seq": 0,
      "openrtc.audit.actor": "ci",
      "openrtc.audit.target": "pool/agents",
      "openrtc.audit.result": "ok",
      "openrtc.audit.origin": "host-a:1",
      "openrtc.audit.prev_hash": "prev0",
      "openrtc.audit.hash": "hash0",
      "openrtc.deployment_version": "v2",
      "openrtc.audit.reason": "membership",
      "openrtc.audit.detail.code": 7,
      "openrtc.audit.detail.tags": ["a", "b"],
    });
    expect(second?.severityNumber).toBe(13);
    expect(second?.severityText).toBe("WARN");
    expect(second?.attributes["openrtc.audit.result"]).toBe("rejected");
    expect(third?.attributes).not.toHaveProperty("openrtc.deployment_version");
    expect(first?.resource.attributes["service.name"]).toBe("audit-test");
  });

  it("puts the exact JSON line in the body when asked, so a log copy can be hash-verified", async () => {
    const { exporter, provider } = sdk();
    const sink = otelLogSink({ loggerProvider: provider, body: "record", loggerName: "custom" });
    const r = record(5, { note: "x" });
    await sink.write([r]);
    await sink.flush();
    const [out] = exporter.getFinishedLogRecords();
    expect(out?.body).toBe(JSON.stringify(r));
    expect(out?.instrumentationScope.name).toBe("custom");
  });

  it("uses the globally registered provider when none is given, and flushes through the proxy", async () => {
    const { exporter, provider } = sdk();
    const sink = otelLogSink({ severity: (r) => (r.seq === 0 ? 17 : 5) });
    logs.setGlobalLoggerProvider(provider);
    await sink.write([record(0), record(1)]);
    await sink.flush();
    const out = exporter.getFinishedLogRecords();
    expect(out.map((r) => [r.severityNumber, r.severityText])).toEqual([
      [17, "ERROR"],
      [5, "DEBUG"],
    ]);
  });

  it("flush is a no-op when no SDK is registered (the API's no-op provider)", async () => {
    const sink = otelLogSink();
    await sink.write([record(0)]);
    await expect(sink.flush()).resolves.toBeUndefined();
  });

  it("flattens deep or mixed extras into JSON strings instead of exploding", () => {
    const attributes = otelAuditAttributes(
      record(0, { deep: { a: { b: { c: { d: 1 } } } }, mixed: [1, { x: 2 }], skipped: undefined }),
    );
    expect(attributes["openrtc.audit.deep.a.b.c"]).toBe('{"d":1}');
    expect(attributes["openrtc.audit.mixed"]).toBe('[1,{"x":2}]');
    expect(attributes).not.toHaveProperty("openrtc.audit.skipped");
  });

  it("rejects bad options with what to pass instead", () => {
    expect(() => otelLogSink({ loggerName: "" })).toThrow(/loggerName must be a non-empty string/);
    expect(() => otelLogSink({ body: "json" as never })).toThrow(/body must be "event" or "record"/);
    expect(() => otelLogSink({ severity: 99 as never })).toThrow(/severity must be an OTel SeverityNumber/);
  });

  it("names the package to install when the logs API is missing", async () => {
    await expect(importLogsApi("@opentelemetry/api-logs-not-installed")).rejects.toThrow(
      /install @opentelemetry\/api-logs/,
    );
  });
});
