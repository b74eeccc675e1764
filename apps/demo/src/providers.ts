// Provider doubles for the demo's agent: the same doubles as @openrtc/observer-voicegateway's
// src/testing/providers.ts (which the package does not export), with a per-call TTS latency and
// an injectable TTS failure. They subclass the SDK's own `tts.TTS`/`ChunkedStream` and
// `stt.STT`, so the metrics (and errors) they produce are emitted by the SDK's base classes,
// through the real `AgentActivity`, onto the real `AgentSession`. Only the network provider is
// faked; the LLM double is the SDK's own `voice.testing.FakeLLM`.
import { AudioFrame } from "@livekit/rtc-node";
import { APIStatusError, stt, tts, type APIConnectOptions } from "@livekit/agents";

export interface DemoTTSOptions {
  /** How long each request waits before its first audio frame, ms. */
  ttfbMs: number;
  /** 0-based index of the request that fails (an unrecoverable provider error); none by default. */
  failRequest?: number;
}

export class DemoTTS extends tts.TTS {
  label = "demo-tts";
  #requests = 0;
  constructor(private readonly options: DemoTTSOptions) {
    super(24000, 1, { streaming: false });
  }
  override get provider(): string {
    return "cartesia";
  }
  override get model(): string {
    return "sonic-2";
  }
  synthesize(text: string, connOptions?: APIConnectOptions, abortSignal?: AbortSignal): tts.ChunkedStream {
    const fail = this.#requests++ === this.options.failRequest;
    return new DemoChunkedStream(text, this, this.options.ttfbMs, fail, connOptions, abortSignal);
  }
  stream(): tts.SynthesizeStream {
    throw new Error("DemoTTS does not stream");
  }
}

class DemoChunkedStream extends tts.ChunkedStream {
  label = "demo-tts";
  constructor(text: string, private readonly owner: DemoTTS, private readonly ttfbMs: number, private readonly fail: boolean, connOptions?: APIConnectOptions, abortSignal?: AbortSignal) {
    super(text, owner, connOptions, abortSignal);
  }
  protected async run(): Promise<void> {
    if (this.ttfbMs > 0) await new Promise((r) => setTimeout(r, this.ttfbMs));
    if (this.fail) {
      // The provider answers 503 and the request is given up: the double reports it exactly as
      // the SDK's retry loop does once retries are exhausted (an unrecoverable `tts_error` on the
      // TTS, which AgentActivity re-emits as the session's `error` event) and returns no audio.
      // (Throwing from run() reaches the same event, plus an unhandled rejection in the SDK's
      // own request task.)
      const error = new APIStatusError({ message: "demo: injected TTS provider error (503 Service Unavailable)", options: { statusCode: 503, retryable: false } });
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

export class DemoSTT extends stt.STT {
  label = "demo-stt";
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
    throw new Error("DemoSTT does not stream");
  }
}

export function silence(ms: number, sampleRate = 16000): AudioFrame {
  const samples = Math.round((sampleRate * ms) / 1000);
  return new AudioFrame(new Int16Array(samples), sampleRate, 1, samples);
}
