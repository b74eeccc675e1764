// What the demo's agent does on each call, with no media: a real `voice.AgentSession` whose
// providers are doubles (@openrtc/observer-voicegateway/testing), driven through a greeting, the caller's words and a
// reply. Every metric the observer records comes from the SDK's own events: TTS TTFB and
// characters from `tts.ChunkedStream` (two requests: greeting, reply), STT audio from
// `stt.STT.recognize`, LLM TTFT from the session's turn (`session.run`, the SDK's FakeLLM).
// End-of-utterance delay and end-to-end turn latency need the audio pipeline (VAD, turn
// detection, a room's audio): the demo has none, so it does not invent them and compare reports
// those two metrics as not tested.
import { voice } from "@livekit/agents";
import type { SessionInfo, SessionOutcome } from "@openrtc/core";
import type { SessionObserver } from "@openrtc/core/livekit";
import { FakeSTT, FakeTTS, silence } from "@openrtc/observer-voicegateway/testing";
import type { CallPlan } from "./regression.ts";

export const GREETING = "Thanks for calling. How can I help?";
const REPLIES = [
  "Sure, I can help with that.",
  "Let me look that up for you right away.",
  "Of course. Your order shipped this morning and should arrive on Thursday.",
  "I have moved your appointment to next Tuesday at ten, and sent you a confirmation by email.",
] as const;

/** The call's session: a real AgentSession with the demo's provider doubles. */
export function createSession(plan: CallPlan): voice.AgentSession {
  const reply = REPLIES[plan.reply % REPLIES.length]!;
  const llm = new voice.testing.FakeLLM([{ input: "hello", content: reply, ttft: plan.llmTtftMs, duration: plan.llmTtftMs + 20 }]);
  // Request 0 is the greeting, request 1 the reply: a failing call greets, then loses its reply.
  const tts = new FakeTTS({ ttfbMs: plan.ttsTtfbMs, ...(plan.fails ? { failRequest: 1 } : {}) });
  return new voice.AgentSession({ llm, tts, stt: new FakeSTT() });
}

async function speak(session: voice.AgentSession, text: string): Promise<void> {
  const tts = session.tts;
  if (tts === undefined || tts === null) return;
  for await (const audio of tts.synthesize(text)) void audio;
}

function nextMetrics(session: voice.AgentSession, type: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function on(ev: { metrics?: { type?: string } }): void {
      if (ev?.metrics?.type === type) done();
    }
    function done(): void {
      clearTimeout(timer);
      session.off(voice.AgentSessionEventTypes.MetricsCollected, on as never);
      resolve();
    }
    session.on(voice.AgentSessionEventTypes.MetricsCollected, on as never);
  });
}

/**
 * Greeting, the caller's words, the reply. Resolves when the conversation is over (it does not
 * close the session: the SDK closes the job's primary session when the job ends).
 */
export async function converse(session: voice.AgentSession, plan: CallPlan): Promise<void> {
  const reply = REPLIES[plan.reply % REPLIES.length]!;
  // No room: no audio in or out, and no recording (nothing to upload).
  await session.start({ agent: new voice.Agent({ instructions: "You are the demo's support agent." }), record: false });
  await speak(session, GREETING);
  await session.stt?.recognize([silence(1200)]);
  // run() resolves once the reply is decided; the LLM's metrics follow.
  const llmMetrics = nextMetrics(session, "llm_metrics", 2000);
  await session.run({ userInput: "hello" });
  await llmMetrics;
  await speak(session, reply);
}

/** `converse`, bounded and total: a conversation that fails or hangs never reaches the call. */
export async function converseSafely(session: voice.AgentSession, plan: CallPlan, timeoutMs = 10_000, onError: (error: unknown) => void = () => {}): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      converse(session, plan),
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`conversation did not finish within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (error) {
    onError(error);
  } finally {
    clearTimeout(timer);
  }
}

type Emitter = { on?: (event: string, fn: (ev: unknown) => void) => unknown; off?: (event: string, fn: (ev: unknown) => void) => unknown };

/**
 * The demo's definition of a failed call, for the observer: a call whose session reported an
 * unrecoverable error (here: the TTS provider failing the reply) is a failed call, even though
 * the job ran to the caller's hang-up. OpenRTC counts the job (it was not dropped); this wrapper
 * hands the observer the call's outcome as the caller experienced it: `failed`, with the error.
 * Everything else is the wrapped `VoiceGatewayObserver` unchanged.
 */
export class FailedCallsObserver implements SessionObserver {
  readonly name: string;
  readonly #inner: SessionObserver;
  readonly #failures = new Map<string, string>();
  readonly #unsubscribe = new Map<string, () => void>();

  constructor(inner: SessionObserver) {
    this.#inner = inner;
    this.name = inner.name ?? "observer";
  }

  onSessionStart(info: SessionInfo, session: unknown): void | Promise<void> {
    try {
      const s = session as Emitter | null;
      if (s !== null && typeof s?.on === "function") {
        const fn = (ev: unknown): void => {
          try {
            const error = (ev as { error?: { recoverable?: unknown; type?: unknown; error?: unknown } } | null)?.error;
            if (error === undefined || error === null || error.recoverable !== false || this.#failures.has(info.jobId)) return;
            const message = error.error instanceof Error ? error.error.message : String(error.error ?? "unknown error");
            this.#failures.set(info.jobId, `${String(error.type ?? "error")}: ${message}`);
          } catch {
            // never into the SDK's emit()
          }
        };
        s.on("error", fn);
        this.#unsubscribe.set(info.jobId, () => s.off?.("error", fn));
      }
    } catch {
      // a broken session object: the inner observer still sees the call
    }
    return this.#inner.onSessionStart?.(info, session);
  }

  onSessionEnd(info: SessionInfo, outcome: SessionOutcome): void | Promise<void> {
    const failure = this.#failures.get(info.jobId);
    this.#failures.delete(info.jobId);
    try {
      this.#unsubscribe.get(info.jobId)?.();
    } catch {
      // ignore
    }
    this.#unsubscribe.delete(info.jobId);
    const seen: SessionOutcome = failure !== undefined && outcome.status === "success" ? { ...outcome, status: "failed", error: failure } : outcome;
    return this.#inner.onSessionEnd?.(info, seen);
  }
}
