/**
 * Provider doubles for tests: they subclass the SDK's own `tts.TTS`/`ChunkedStream` and
 * `stt.STT`, so the metrics (and errors) they produce are emitted by the SDK's base classes (its
 * `monitorMetrics`), through the real `AgentActivity`, onto the real `AgentSession`. Only the
 * network provider is faked; the LLM double is the SDK's own `voice.testing.FakeLLM`.
 */
import { AudioFrame } from "@livekit/rtc-node";
import { APIStatusError, stt, tts, type APIConnectOptions } from "@livekit/agents";

export interface FakeTTSOptions {
  /** How long each request waits before its first audio frame, ms. Default 0. */
  ttfbMs?: number;
  /** 0-based index of the request that fails with an unrecoverable provider error (a 503); none by default. */
  failRequest?: number;
}

export class FakeTTS extends tts.TTS {
  label = "fake-tts";
  readonly #ttfbMs: number;
  readonly #failRequest: number | undefined;
  #requests = 0;
  /** `new FakeTTS(150)` is `new FakeTTS({ ttfbMs: 150 })`. */
  constructor(options: FakeTTSOptions | number = {}) {
    super(24000, 1, { streaming: false });
    const o = typeof options === "number" ? { ttfbMs: options } : options;
    this.#ttfbMs = o.ttfbMs ?? 0;
    this.#failRequest = o.failRequest;
  }
  override get provider(): string {
    return "cartesia";
  }
  override get model(): string {
    return "sonic-2";
  }
  synthesize(text: string, connOptions?: APIConnectOptions, abortSignal?: AbortSignal): tts.ChunkedStream {
    const fail = this.#requests++ === this.#failRequest;
    return new FakeChunkedStream(text, this, this.#ttfbMs, fail, connOptions, abortSignal);
  }
  stream(): tts.SynthesizeStream {
    throw new Error("FakeTTS does not stream");
  }
}

class FakeChunkedStream extends tts.ChunkedStream {
  label = "fake-tts";
  constructor(text: string, private readonly owner: FakeTTS, private readonly ttfbMs: number, private readonly fail: boolean, connOptions?: APIConnectOptions, abortSignal?: AbortSignal) {
    super(text, owner, connOptions, abortSignal);
  }
  protected async run(): Promise<void> {
    if (this.ttfbMs > 0) await new Promise((r) => setTimeout(r, this.ttfbMs));
    if (this.fail) {
      // The provider answers 503 and the request is given up: reported exactly as the SDK's retry
      // loop does once retries are exhausted (an unrecoverable `tts_error` on the TTS, which
      // AgentActivity re-emits as the session's `error` event), with no audio. Throwing from
      // run() would reach the same event plus an unhandled rejection in the SDK's request task.
      const error = new APIStatusError({ message: "injected TTS provider error (503 Service Unavailable)", options: { statusCode: 503, retryable: false } });
      this.owner.emit("error", { type: "tts_error", timestamp: Date.now(), label: this.owner.label, error, recoverable: false });
      this.queue.close();
      return;
    }
    const samples = 2400; // 100 ms at 24 kHz
    for (let i = 0; i < 3; i++) {
      this.queue.put({ requestId: "req-tts", segmentId: "seg", frame: new AudioFrame(new Int16Array(samples), 24000, 1, samples), final: i === 2 });
    }
    this.queue.close();
  }
}

export class FakeSTT extends stt.STT {
  label = "fake-stt";
  constructor() {
    super({ streaming: false, interimResults: false });
  }
  override get provider(): string {
    return "deepgram";
  }
  override get model(): string {
    return "nova-3";
  }
  protected async _recognize(): Promise<stt.SpeechEvent> {
    return { type: stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives: [{ text: "hello", language: "en" as never, startTime: 0, endTime: 1, confidence: 1 }] };
  }
  stream(): stt.SpeechStream {
    throw new Error("FakeSTT does not stream");
  }
}

export function silence(ms: number, sampleRate = 16000): AudioFrame {
  const samples = Math.round((sampleRate * ms) / 1000);
  return new AudioFrame(new Int16Array(samples), sampleRate, 1, samples);
}
