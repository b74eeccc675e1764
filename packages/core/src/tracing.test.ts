import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SpanStatusCode } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { AgentPool } from "./pool.ts";
import { silentLogger } from "./logger.ts";
import { SESSION_SPAN_NAME } from "./tracing.ts";
import { manualClock } from "./testing/memory-sink.ts";

describe("one span per session (real OTel SDK, in-memory exporter)", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  beforeAll(() => exporter.reset());
  afterAll(() => provider.shutdown());

  test("attributes, outcome as status, and a drain event while live", () => {
    const clock = manualClock(1_800_000_000);
    const pool = new AgentPool({ deploymentVersion: "v2.0.0", clock, logger: silentLogger, tracer: provider.getTracer("test") });
    const ok = pool.startSession({ jobId: "job-ok", agentName: "support", roomName: "room-1", metadata: { tenant: "acme" } });
    const bad = pool.startSession({ jobId: "job-bad", agentName: "support", roomName: "room-2" });
    const cancelled = pool.startSession({ jobId: "job-cancel", agentName: "sales", roomName: "room-3" });
    clock.advance(5);
    ok.end({ status: "success" });
    pool.beginDrain({ actor: "deployer", reason: "v3" });
    bad.end({ status: "failed", error: new Error("tts hung") });
    cancelled.end({ status: "cancelled" });

    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual([SESSION_SPAN_NAME, SESSION_SPAN_NAME, SESSION_SPAN_NAME]);
    const byJob = Object.fromEntries(spans.map((s) => [s.attributes["livekit.job.id"], s]));
    expect(byJob["job-ok"]?.attributes).toMatchObject({
      "openrtc.deployment_version": "v2.0.0",
      "openrtc.tenant": "acme",
      "openrtc.agent_name": "support",
      "livekit.job.id": "job-ok",
      "livekit.room.name": "room-1",
    });
    expect(byJob["job-ok"]?.status.code).toBe(SpanStatusCode.OK);
    expect(byJob["job-ok"]?.events).toEqual([]);
    expect(byJob["job-bad"]?.status).toEqual({ code: SpanStatusCode.ERROR, message: "tts hung" });
    expect(byJob["job-bad"]?.events.map((e: { name: string }) => e.name)).toEqual(["openrtc.drain_started"]);
    expect(byJob["job-bad"]?.events[0]?.attributes).toMatchObject({ "openrtc.drain.actor": "deployer", "openrtc.drain.reason": "v3" });
    expect(byJob["job-cancel"]?.status.code).toBe(SpanStatusCode.UNSET);
    expect(byJob["job-cancel"]?.attributes["openrtc.session.status"]).toBe("cancelled");
    expect(byJob["job-ok"]?.duration).toEqual([5, 0]);
  });
});
