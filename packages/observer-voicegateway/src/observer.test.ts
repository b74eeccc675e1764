import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { initializeLogger, llm, voice } from "@livekit/agents";
import type { SessionInfo, SessionOutcome } from "@openrtc/core";
import { createCollectorServer, type CollectorServer } from "./collector.ts";
import { compare } from "./compare.ts";
import { VoiceGatewayObserver } from "./observer.ts";
import { InMemoryStore } from "./store.ts";
import { FakeSTT, FakeTTS, silence } from "./testing/providers.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const warnings: string[] = [];
const recording = { ...quiet, warn: (_f: object, m: string) => void warnings.push(m) };

beforeAll(() => initializeLogger({ pretty: false, level: "silent" }));

function info(jobId: string, version: string | null = "v2.0.0", tenant = "acme"): SessionInfo {
  return { jobId, agentName: "support", roomName: `room-${jobId}`, deploymentVersion: version, tenant, metadata: { tenant }, startedAt: 1_800_000_000 };
}
const ended = (status: SessionOutcome["status"] = "success", error?: string): SessionOutcome => ({ status, endedAt: 1_800_000_042, durationSeconds: 42, ...(error ? { error } : {}) });

/** One real call: a real AgentSession whose providers are doubles, driven through a turn. */
async function realCall(observer: VoiceGatewayObserver, jobId: string, opts: { version?: string; ttsDelayMs?: number; status?: SessionOutcome["status"] } = {}) {
  const fakeLlm = new voice.testing.FakeLLM([{ input: "hello", content: "Hi there, how can I help?", ttft: 20, duration: 40 }]);
  const session = new voice.AgentSession({ llm: fakeLlm, tts: new FakeTTS(opts.ttsDelayMs ?? 0), stt: new FakeSTT() });
  const i = info(jobId, opts.version ?? "v2.0.0");
  observer.onSessionStart(i, session);
  await session.start({ agent: new voice.Agent({ instructions: "help the caller" }) });
  await session.run({ userInput: "hello" });
  // run() resolves when the reply is decided; the LLM's metrics and the assistant message follow.
  await new Promise((r) => setTimeout(r, 300));
  for await (const _ of session.tts!.synthesize("Hello, caller.")) void _;
  await session.stt!.recognize([silence(1500)] as never);
  // EOU metrics and e2eLatency come from the audio pipeline (VAD + turn detection), which needs a
  // room; emit them on the real session with the SDK's own event constructors.
  session.emit(voice.AgentSessionEventTypes.MetricsCollected, voice.createMetricsCollectedEvent({ metrics: { type: "eou_metrics", timestamp: Date.now(), endOfUtteranceDelayMs: 320, transcriptionDelayMs: 40, onUserTurnCompletedDelayMs: 1, lastSpeakingTimeMs: Date.now() - 400 } }));
  session.emit(voice.AgentSessionEventTypes.ConversationItemAdded, voice.createConversationItemAddedEvent(llm.ChatMessage.create({ role: "user", content: "are you there?", metrics: { startedSpeakingAt: 1_800_000_010, stoppedSpeakingAt: 1_800_000_011.5 } })));
  session.emit(voice.AgentSessionEventTypes.ConversationItemAdded, voice.createConversationItemAddedEvent(llm.ChatMessage.create({ role: "assistant", content: "yes", metrics: { startedSpeakingAt: 1_800_000_012.3, stoppedSpeakingAt: 1_800_000_013, e2eLatency: 0.8 } })));
  await session.close();
  await observer.onSessionEnd(i, ended(opts.status ?? "success"));
  return session;
}

let collector: CollectorServer | undefined;
afterEach(async () => {
  await collector?.close();
  collector = undefined;
  warnings.length = 0;
});

describe("VoiceGatewayObserver with real AgentSession objects", () => {
  it("records the call from the session's real metrics events into the in-memory store", async () => {
    const observer = new VoiceGatewayObserver({ env: {}, logger: quiet, otel: false });
    expect(observer.store).toBeInstanceOf(InMemoryStore);
    const calls: unknown[] = [];
    const obs2 = new VoiceGatewayObserver({ env: {}, logger: quiet, otel: false, onCall: (c) => calls.push(c) });
    await realCall(obs2, "job-1");
    const [call] = calls as import("./call.ts").CallRecord[];
    expect(call).toMatchObject({ jobId: "job-1", deploymentVersion: "v2.0.0", tenant: "acme", agentName: "support", status: "success", durationSeconds: 42, turns: 2 });
    expect(call!.llmTtftMs.length).toBe(1);
    expect(call!.llmTtftMs[0]).toBeGreaterThanOrEqual(15);
    expect(call!.ttsTtfbMs.length).toBe(1);
    expect(call!.eouDelayMs).toEqual([320]);
    expect(call!.e2eLatencyMs).toEqual([800]);
    expect(call!.ttsCharacters).toBe("Hello, caller.".length);
    expect(call!.sttAudioSeconds).toBeCloseTo(1.5, 5);
    expect(call!.costUsd).toBeGreaterThan(0);
    expect(call!.requests.map((r) => r.modality).sort()).toEqual(["eou", "llm", "stt", "tts"]);
    expect(call!.requests.find((r) => r.modality === "tts")).toMatchObject({ provider: "cartesia", model: "sonic-2" });
    expect(call!.turnDetail.at(-1)).toMatchObject({ callerSpeakStartMs: 1_800_000_010_000, callerSpeakEndMs: 1_800_000_011_500, agentSpeakStartMs: 1_800_000_012_300, e2eLatencyMs: 800 });
    expect(obs2.store!.buckets({ version: "v2.0.0" })[0]!.counters.calls).toBe(1);
    expect(obs2.stats()).toMatchObject({ active: 0, calls: 1, errors: 0 });
    void observer;
  });

  it("unsubscribes at the end: later events on the same session are not counted", async () => {
    const calls: import("./call.ts").CallRecord[] = [];
    const observer = new VoiceGatewayObserver({ env: {}, logger: quiet, otel: false, onCall: (c) => calls.push(c) });
    const session = await realCall(observer, "job-2");
    expect(session.listenerCount(voice.AgentSessionEventTypes.MetricsCollected)).toBe(0);
    expect(session.listenerCount(voice.AgentSessionEventTypes.ConversationItemAdded)).toBe(0);
  });

  it("ships to a real local collector in voicegateway's ingest format, and the store there compares versions", async () => {
    collector = await createCollectorServer({ apiKey: "vk_test" });
    const observer = new VoiceGatewayObserver({ env: {}, logger: quiet, otel: false, project: "prod", collectorUrl: collector.url, apiKey: "vk_test", openrtcCollectorUrl: collector.url, openrtcCollectorToken: "vk_test", shipper: { flushIntervalMs: 50 } });
    expect(observer.store).toBeNull();
    await realCall(observer, "job-3");
    await observer.flush(5000);
    // /v1/ingest: an array of RequestRecord rows, bearer auth, voicegateway's field names and units
    const ingest = collector.log.filter((l) => l.path === "/v1/ingest");
    expect(ingest.length).toBeGreaterThan(0);
    expect(ingest.every((l) => l.authorization === "Bearer vk_test" && l.status === 200)).toBe(true);
    const rows = collector.requests;
    expect(rows.map((r) => r.modality).sort()).toEqual(["eou", "llm", "stt", "tts"]);
    for (const r of rows) {
      expect(r).toMatchObject({ project: "prod", session_id: "job-3", agent_id: "support", revision: "v2.0.0", metadata: { tenant_id: "acme", room: "room-job-3" } });
      expect(Object.keys(r).sort()).toEqual(["agent_id", "cached_input_units", "cost_usd", "error_message", "fallback_from", "id", "input_units", "metadata", "modality", "model_id", "output_units", "pricing_source", "project", "provider", "rate_rule", "rated_price_usd", "revision", "session_id", "status", "timestamp", "total_latency_ms", "ttfb_ms", "turn_index"]);
      expect(r.timestamp).toBeGreaterThan(1.7e9);
      expect(r.timestamp).toBeLessThan(1e10); // seconds, not ms
    }
    const stt = rows.find((r) => r.modality === "stt")!;
    expect(stt).toMatchObject({ provider: "deepgram", model_id: "deepgram/nova-3" });
    expect(stt.input_units).toBeCloseTo(1.5 / 60, 8); // audio minutes
    expect(rows.find((r) => r.modality === "tts")!.input_units).toBe("Hello, caller.".length); // characters
    expect(rows.find((r) => r.modality === "eou")!.metadata).toMatchObject({ eou: { end_of_utterance_delay: 0.32, transcription_delay: 0.04 } });
    // /v1/ingest/turns: TurnRow
    expect(collector.turns).toEqual([{ session_id: "job-3", turn_index: 1, caller_speak_start_ms: 1_800_000_010_000, caller_speak_end_ms: 1_800_000_011_500, agent_speak_start_ms: 1_800_000_012_300, agent_speak_end_ms: 1_800_000_013_000, response_speed_ms: 800 }]);
    // OpenRTC's own endpoint: the call's summary, so compare can run in the coordinator
    expect(collector.store.buckets({ version: "v2.0.0" })[0]!.counters.calls).toBe(1);
    expect(compare(collector.store, { base: "v1.0.0", candidate: "v2.0.0" }).verdict).toBe("insufficient_data");
    await observer.close(1000);
  });

  it("a failed call still produces a record, and a voicegateway error row", async () => {
    collector = await createCollectorServer();
    const observer = new VoiceGatewayObserver({ env: { VOICEGW_COLLECTOR_URL: collector.url }, logger: quiet, otel: false });
    const i = info("job-4", null);
    observer.onSessionStart(i, null); // observeSession was never called: no live session
    await observer.onSessionEnd(i, ended("failed", "tts provider crashed"));
    await observer.flush(2000);
    expect(collector.requests).toHaveLength(1);
    expect(collector.requests[0]).toMatchObject({ modality: "session", status: "error", error_message: "tts provider crashed", revision: "untagged" });
    // an end with no start (start threw, or the observer was added late) is still counted
    await observer.onSessionEnd(info("job-5"), ended("cancelled"));
    expect(observer.stats().calls).toBe(2);
  });

  it("isolation: a collector that is down, a throwing hook or a broken session never reach the call", async () => {
    const observer = new VoiceGatewayObserver({ env: {}, logger: recording, otel: false, collectorUrl: "http://127.0.0.1:9", endFlushTimeoutMs: 200, shipper: { maxRetries: 0, backoffMs: 10 }, onCall: () => { throw new Error("hook bug"); } });
    const started = Date.now();
    await realCall(observer, "job-6");
    expect(Date.now() - started).toBeLessThan(10_000);
    // a session whose on() throws
    observer.onSessionStart(info("job-7"), { on() { throw new Error("boom"); } });
    await observer.onSessionEnd(info("job-7"), ended());
    // a session that emits garbage
    const listeners: ((ev: unknown) => void)[] = [];
    observer.onSessionStart(info("job-8"), { on: (_e: string, fn: (ev: unknown) => void) => listeners.push(fn), off() { throw new Error("off failed"); } });
    for (const fn of listeners) fn(undefined), fn({ metrics: null }), fn({ metrics: { type: "llm_metrics", ttftMs: "x", metadata: 5 } }), fn({ item: { type: "message", role: "assistant", metrics: null } });
    await observer.onSessionEnd(info("job-8"), ended());
    expect(observer.stats().errors).toBeGreaterThanOrEqual(3);
    expect(observer.stats().calls).toBe(3);
    expect(observer.stats().shippers[0]!.pending).toBeGreaterThan(0); // kept, bounded, for later
    // each failing step is logged once, not per call: a second bad call adds no warnings
    const before = warnings.length;
    observer.onSessionStart(info("job-10"), { on() { throw new Error("boom"); } });
    await observer.onSessionEnd(info("job-10"), ended());
    expect(warnings.length).toBe(before);
    expect(observer.store).toBeNull();
    await observer.close(100);
  });

  it("reads the collector URL and key from voicegateway's environment variables", async () => {
    collector = await createCollectorServer({ apiKey: "vk_env" });
    const observer = new VoiceGatewayObserver({ env: { VOICEGW_COLLECTOR_URL: `${collector.url}/v1/ingest`, VOICEGW_VIRTUAL_KEY: "vk_env" }, logger: quiet, otel: false });
    await observer.onSessionEnd(info("job-9"), ended("failed"));
    await observer.flush(2000);
    expect(collector.log.map((l) => [l.path, l.status])).toContainEqual(["/v1/ingest", 200]);
    expect(() => new VoiceGatewayObserver({ env: {}, collectorUrl: "not a url", otel: false })).toThrow(TypeError);
  });
});
