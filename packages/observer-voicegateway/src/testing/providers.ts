/**
 * Provider doubles for tests: they subclass the SDK's own `tts.TTS`/`ChunkedStream` and
 * `stt.STT`, so the metrics they produce are emitted by the SDK's base classes (its
 * `monitorMetrics`), through the real `AgentActivity`, onto the real `AgentSession`. Only the
 * network provider is faked; the LLM double is the SDK's own `voice.testing.FakeLLM`.
 */
import { AudioFrame } from "@livekit/rtc-node";
import { stt, tts, type APIConnectOptions } from "@livekit/agents";

export class FakeTTS extends tts.TTS {
  label = "fake-tts";
  constructor(private readonly delayMs = 0) {
    super(24000, 1, { streaming: false });
  }
  override get provider(): string {
    return "cartesia";
  }
  override get model(): string {
    return "sonic-2";
  }
  synthesize(text: string, connOptions?: APIConnectOptions, abortSignal?: AbortSignal): tts.ChunkedStream {
    return new FakeChunkedStream(text, this, this.delayMs, connOptions, abortSignal);
  }
  stream(): tts.SynthesizeStream {
    throw new Error("FakeTTS does not stream");
  }
}

class FakeChunkedStream extends tts.ChunkedStream {
  label = "fake-tts";
  constructor(text: string, owner: FakeTTS, private readonly delayMs: number, connOptions?: APIConnectOptions, abortSignal?: AbortSignal) {
    super(text, owner, connOptions, abortSignal);
  }
  protected async run(): Promise<void> {
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
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
