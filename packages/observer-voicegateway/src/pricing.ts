/**
 * The cost table: what one LLM token, one STT minute, one TTS character costs, per provider/model.
 *
 * The defaults are illustrative list prices (USD) so a demo shows non-zero costs; they are not a
 * billing source. Pass `pricing` to the observer to use your negotiated rates; entries are matched
 * on `provider/model`, then `provider/*`, then `*` for the modality. voicegateway's collector
 * re-rates each row against its own rate card anyway (its ingest overwrites rated prices), so the
 * numbers here matter for `compare`'s cost-per-call metric, not for invoices.
 */

export interface LlmPrice {
  /** USD per million prompt tokens (uncached). */
  inputPerMillion: number;
  /** USD per million cached prompt tokens (defaults to inputPerMillion). */
  cachedInputPerMillion?: number;
  outputPerMillion: number;
}
export interface SttPrice {
  perMinute: number;
}
export interface TtsPrice {
  perMillionCharacters: number;
}

export interface PricingTable {
  llm?: Record<string, LlmPrice>;
  stt?: Record<string, SttPrice>;
  tts?: Record<string, TtsPrice>;
}

export const PRICING_SOURCE = "openrtc-default-prices@2026-01";

export const DEFAULT_PRICING: Required<PricingTable> = {
  llm: {
    "openai/gpt-4o-mini": { inputPerMillion: 0.15, cachedInputPerMillion: 0.075, outputPerMillion: 0.6 },
    "openai/gpt-4o": { inputPerMillion: 2.5, cachedInputPerMillion: 1.25, outputPerMillion: 10 },
    "openai/gpt-4.1-mini": { inputPerMillion: 0.4, cachedInputPerMillion: 0.1, outputPerMillion: 1.6 },
    "*": { inputPerMillion: 0.15, outputPerMillion: 0.6 },
  },
  stt: {
    "deepgram/nova-3": { perMinute: 0.0077 },
    "deepgram/*": { perMinute: 0.0077 },
    "*": { perMinute: 0.006 },
  },
  tts: {
    "cartesia/sonic-2": { perMillionCharacters: 40 },
    "elevenlabs/*": { perMillionCharacters: 150 },
    "*": { perMillionCharacters: 15 },
  },
};

/** Merges a user table over the defaults, entry by entry (a user entry wins). */
export function resolvePricing(overrides: PricingTable | undefined): Required<PricingTable> {
  return {
    llm: { ...DEFAULT_PRICING.llm, ...overrides?.llm },
    stt: { ...DEFAULT_PRICING.stt, ...overrides?.stt },
    tts: { ...DEFAULT_PRICING.tts, ...overrides?.tts },
  };
}

function lookup<T>(table: Record<string, T>, provider: string, model: string): T | undefined {
  return table[`${provider}/${model}`] ?? table[`${provider}/*`] ?? table["*"];
}

export function llmCost(table: Required<PricingTable>, provider: string, model: string, promptTokens: number, cachedTokens: number, completionTokens: number): number {
  const price = lookup(table.llm, provider, model);
  if (price === undefined) return 0;
  const cached = Math.max(0, Math.min(cachedTokens, promptTokens));
  const uncached = Math.max(0, promptTokens - cached);
  return (uncached * price.inputPerMillion + cached * (price.cachedInputPerMillion ?? price.inputPerMillion) + completionTokens * price.outputPerMillion) / 1e6;
}

export function sttCost(table: Required<PricingTable>, provider: string, model: string, audioSeconds: number): number {
  const price = lookup(table.stt, provider, model);
  return price === undefined ? 0 : (Math.max(0, audioSeconds) / 60) * price.perMinute;
}

export function ttsCost(table: Required<PricingTable>, provider: string, model: string, characters: number): number {
  const price = lookup(table.tts, provider, model);
  return price === undefined ? 0 : (Math.max(0, characters) * price.perMillionCharacters) / 1e6;
}
