/**
 * Synthetic calls with known distributions, for compare's known-answer tests and the bench.
 * Latencies are log-normal (a call-level factor times per-turn noise: turns of one call are
 * correlated, as in real calls); a `shift` multiplies a metric's every value, so it moves every
 * quantile, p95 included, by that factor.
 */
import type { CallRecord } from "../call.ts";
import { CALL_RECORD_VERSION } from "../call.ts";

export function gaussian(random: () => number): number {
  let u = 0;
  while (u === 0) u = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

export interface SyntheticProfile {
  version: string;
  tenant?: string;
  agent?: string;
  /** Multipliers on each latency metric (1 = unchanged). */
  e2eShift?: number;
  ttftShift?: number;
  ttfbShift?: number;
  eouShift?: number;
  costShift?: number;
  failureRate?: number;
  turns?: number;
}

export function syntheticCall(profile: SyntheticProfile, index: number, random: () => number): CallRecord {
  const turns = profile.turns ?? 6;
  const callFactor = Math.exp(0.25 * gaussian(random));
  const series = (median: number, shift: number): number[] => Array.from({ length: turns }, () => median * shift * callFactor * Math.exp(0.35 * gaussian(random)));
  const llm = series(450, profile.ttftShift ?? 1);
  const tts = series(180, profile.ttfbShift ?? 1);
  const eou = series(300, profile.eouShift ?? 1);
  const e2e = llm.map((l, i) => (l + (tts[i] as number) + (eou[i] as number)) * (profile.e2eShift ?? 1));
  const prompt = Math.round(turns * 900 * Math.exp(0.2 * gaussian(random)));
  const completion = Math.round(turns * 60 * Math.exp(0.2 * gaussian(random)));
  const failed = random() < (profile.failureRate ?? 0.01);
  const duration = 30 + 90 * random();
  return {
    v: CALL_RECORD_VERSION,
    jobId: `${profile.version}-job-${index}`,
    roomName: `room-${index}`,
    agentName: profile.agent ?? "support",
    deploymentVersion: profile.version,
    tenant: profile.tenant ?? "acme",
    startedAt: 1_800_000_000 + index,
    endedAt: 1_800_000_000 + index + duration,
    durationSeconds: duration,
    status: failed ? "failed" : "success",
    ...(failed ? { error: "synthetic failure" } : {}),
    turns,
    llmTtftMs: llm,
    ttsTtfbMs: tts,
    eouDelayMs: eou,
    e2eLatencyMs: e2e,
    promptTokens: prompt,
    cachedPromptTokens: 0,
    completionTokens: completion,
    ttsCharacters: turns * 120,
    sttAudioSeconds: duration / 2,
    ttsAudioSeconds: duration / 3,
    costUsd: (prompt * 0.15e-6 + completion * 0.6e-6 + (duration / 120) * 0.0077 + turns * 120 * 15e-6) * (profile.costShift ?? 1),
    errors: [],
    requests: [],
    turnDetail: [],
    requestsDropped: 0,
  };
}

export function syntheticCalls(profile: SyntheticProfile, count: number, random: () => number): CallRecord[] {
  return Array.from({ length: count }, (_, i) => syntheticCall(profile, i, random));
}
