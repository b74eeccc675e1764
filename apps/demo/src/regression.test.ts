import { beforeAll, describe, expect, test } from "vitest";
import { initializeLogger, voice } from "@livekit/agents";
import type { SessionInfo } from "@openrtc/core";
import { CallRecorder, InMemoryStore, resolvePricing, VoiceGatewayObserver, type CallRecord } from "@openrtc/observer-voicegateway";
import { converse, createSession, FailedCallsObserver } from "./conversation.ts";
import { BASE_TTS_TTFB_MS, decodeRegression, DEMO_COMPARE_OPTIONS, encodeRegression, judge, planCall, regressionFor } from "./regression.ts";

const V1 = "v1.0.0";
const V2 = "v2.0.0";

beforeAll(() => initializeLogger({ pretty: false, level: "silent" }));

describe("the injected regression", () => {
  test("seeded: the same seed gives the same amounts, within the documented ranges", () => {
    expect(regressionFor(1, V2)).toEqual(regressionFor(1, V2));
    expect(regressionFor(1, V2)).not.toEqual(regressionFor(2, V2));
    for (let seed = 0; seed < 200; seed++) {
      const r = regressionFor(seed, V2);
      expect(r.ttsSlowdown).toBeGreaterThanOrEqual(0.5);
      expect(r.ttsSlowdown).toBeLessThanOrEqual(1);
      expect(r.failureRate).toBeGreaterThanOrEqual(0.2);
      expect(r.failureRate).toBeLessThanOrEqual(0.4);
    }
    const r = regressionFor(7, V2);
    expect(decodeRegression(encodeRegression(r))).toEqual(r);
    expect(decodeRegression(undefined)).toBeUndefined();
    expect(decodeRegression("{nope")).toBeUndefined();
    expect(decodeRegression(JSON.stringify({ version: V2 }))).toBeUndefined();
  });

  test("only the named version is affected; per call, the draws depend on (seed, call) alone", () => {
    const r = regressionFor(1, V2);
    let failures = 0;
    for (let call = 0; call < 2000; call++) {
      const a = planCall(r, V1, call);
      const b = planCall(r, V2, call);
      expect(a).toEqual(planCall(undefined, V1, call, r.seed)); // v1 is the same as no regression
      expect(a.fails).toBe(false);
      expect(a.ttsTtfbMs).toBeGreaterThanOrEqual(BASE_TTS_TTFB_MS[0]);
      expect(a.ttsTtfbMs).toBeLessThanOrEqual(BASE_TTS_TTFB_MS[1]);
      expect(Number.isInteger(b.ttsTtfbMs)).toBe(true);
      expect(b.ttsTtfbMs / a.ttsTtfbMs).toBeCloseTo(1 + r.ttsSlowdown, 1);
      expect(b.llmTtftMs).toBe(a.llmTtftMs);
      if (b.fails) failures++;
    }
    expect(failures / 2000).toBeCloseTo(r.failureRate, 1);
  });
});

/** A call record as the observer would build it from the planned call (no session). */
function record(version: string, call: number, seed: number): CallRecord {
  const r = regressionFor(seed, V2);
  const plan = planCall(r, version, call);
  const recorder = new CallRecorder({ jobId: `${version}-${call}`, roomName: "r", agentName: "", deploymentVersion: version, tenant: "acme", startedAt: 0 }, { pricing: resolvePricing(undefined) });
  // timer jitter of a loaded box: up to +30 ms
  const jitter = () => (call * 7919) % 31;
  for (let i = 0; i < (plan.fails ? 1 : 2); i++) recorder.onMetrics({ metrics: { type: "tts_metrics", ttfbMs: plan.ttsTtfbMs + jitter(), charactersCount: 30, audioDurationMs: 300, metadata: { modelProvider: "cartesia", modelName: "sonic-2" } } });
  recorder.onMetrics({ metrics: { type: "llm_metrics", ttftMs: plan.llmTtftMs + jitter(), promptTokens: 0, completionTokens: 0, metadata: {} } });
  return recorder.finish({ status: plan.fails ? "failed" : "success", endedAt: 2, durationSeconds: 2 });
}

describe("compare with the demo's options", () => {
  test("at the demo's size (about a dozen calls per version when it judges), every seed's regression reads roll_back", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const store = new InMemoryStore();
      for (let call = 0; call < 13; call++) store.record(record(V1, call, seed));
      for (let call = 13; call < 23; call++) store.record(record(V2, call, seed));
      const { result, text } = judge(store, V1, V2);
      expect(result.verdict, `seed ${seed}\n${text}`).toBe("roll_back");
      expect(result.reason).toMatch(/tts_ttfb_ms \+\d/);
      expect(result.metrics.find((m) => m.name === "tts_ttfb_ms")?.classification).toBe("hard_regression");
      expect(text).toContain(`≥ ${DEMO_COMPARE_OPTIONS.minCalls} calls`);
    }
  });

  test("below the guard: insufficient_data, and the guard is stated", () => {
    const store = new InMemoryStore();
    for (let call = 0; call < 12; call++) store.record(record(V1, call, 1));
    for (let call = 12; call < 12 + DEMO_COMPARE_OPTIONS.minCalls - 1; call++) store.record(record(V2, call, 1));
    const { result, text } = judge(store, V1, V2);
    expect(result.verdict).toBe("insufficient_data");
    expect(result.reason).toContain(`≥ ${DEMO_COMPARE_OPTIONS.minCalls} calls per side`);
    expect(text).toMatch(/^guard: /m);
  });

  test("no regression (both sides v1's agent): not a roll_back", () => {
    const store = new InMemoryStore();
    for (let call = 0; call < 13; call++) store.record(record(V1, call, 3));
    for (let call = 13; call < 23; call++) store.record({ ...record(V1, call, 3), deploymentVersion: V2 });
    expect(judge(store, V1, V2).result.verdict).toBe("promote");
  });
});

describe("the agent's conversation: a real AgentSession with provider doubles, seen by the observer", () => {
  const info = (jobId: string, version: string): SessionInfo => ({ jobId, agentName: "", roomName: `room-${jobId}`, deploymentVersion: version, tenant: "acme", metadata: { tenant: "acme" }, startedAt: 1_800_000_000 });

  async function call(observer: FailedCallsObserver, jobId: string, version: string, plan: ReturnType<typeof planCall>): Promise<voice.AgentSession> {
    const session = createSession(plan);
    await observer.onSessionStart(info(jobId, version), session);
    await converse(session, plan);
    await session.close();
    // The job ran to the caller's hang-up: core reports success.
    await observer.onSessionEnd(info(jobId, version), { status: "success", endedAt: 1_800_000_003, durationSeconds: 3 });
    return session;
  }

  test("a v1 call records its TTS and LLM latencies; a failing v2 call is recorded failed with its TTS error", async () => {
    const records: CallRecord[] = [];
    const observer = new FailedCallsObserver(new VoiceGatewayObserver({ env: {}, otel: false, onCall: (c) => records.push(c) }));
    const r = { version: V2, ttsSlowdown: 0.8, failureRate: 0.3, seed: 1 };
    await call(observer, "job-1", V1, { ttsTtfbMs: 150, llmTtftMs: 20, fails: false, reply: 1 });
    const session = await call(observer, "job-2", V2, { ...planCall(r, V2, 0), ttsTtfbMs: 270, fails: true });
    const [ok, failed] = records;
    expect(ok).toMatchObject({ jobId: "job-1", deploymentVersion: V1, status: "success", errors: [] });
    expect(ok!.ttsTtfbMs).toHaveLength(2); // greeting and reply
    for (const ms of ok!.ttsTtfbMs) expect(ms).toBeGreaterThanOrEqual(145);
    expect(ok!.llmTtftMs).toHaveLength(1);
    expect(ok!.llmTtftMs[0]).toBeGreaterThanOrEqual(15);
    expect(ok!.sttAudioSeconds).toBeCloseTo(1.2, 5);
    expect(ok!.ttsCharacters).toBeGreaterThan(0);
    expect(failed).toMatchObject({ jobId: "job-2", deploymentVersion: V2, status: "failed" });
    expect(failed!.error).toMatch(/^tts_error: injected TTS provider error/);
    expect(failed!.errors).toEqual([expect.objectContaining({ recoverable: false, message: expect.stringContaining("503") })]);
    expect(failed!.ttsTtfbMs.length).toBeGreaterThanOrEqual(1); // the greeting got through
    for (const ms of failed!.ttsTtfbMs) expect(ms).toBeGreaterThanOrEqual(265);
    // both observers let go of the session at the end
    expect(session.listenerCount(voice.AgentSessionEventTypes.Error)).toBe(0);
  });
});
