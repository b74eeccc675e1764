/**
 * A small seeded generator for the fuzz targets: reproducible (the seed is printed with every
 * run), fast enough for a million inputs, and biased toward the bytes that break parsers.
 */
export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** mulberry32: a uniform 32-bit integer. */
  u32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  int(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  char(): string {
    const r = this.int(10);
    if (r < 5) return String.fromCharCode(0x20 + this.int(95));
    if (r < 7) return this.pick(INTERESTING_CHARS);
    if (r < 9) return String.fromCharCode(this.int(0x20));
    return String.fromCodePoint(this.int(0x10ffff + 1) & ~0x800 /* skip lone surrogates mostly */);
  }

  string(maxLength = 32): string {
    let out = "";
    const length = this.int(maxLength + 1);
    for (let i = 0; i < length; i++) out += this.char();
    return out;
  }

  /** One random edit of `text`: flip, insert, delete, duplicate, truncate or splice in a token. */
  mutate(text: string): string {
    const at = this.int(text.length + 1);
    switch (this.int(8)) {
      case 0:
        return text.slice(0, at) + this.char() + text.slice(at + 1);
      case 1:
        return text.slice(0, at) + this.char() + text.slice(at);
      case 2:
        return text.slice(0, at) + text.slice(at + 1 + this.int(4));
      case 3: {
        const end = at + this.int(16);
        return text.slice(0, end) + text.slice(at, end) + text.slice(end);
      }
      case 4:
        return text.slice(0, at);
      case 5:
        return text.slice(0, at) + this.pick(INTERESTING_TOKENS) + text.slice(at);
      case 6:
        return text.slice(0, at) + text.slice(at).toUpperCase();
      default:
        return text.slice(0, at) + this.pick(INTERESTING_TOKENS) + text.slice(at + this.int(8));
    }
  }

  mutateMany(text: string, max = 4): string {
    let out = text;
    const count = 1 + this.int(max);
    for (let i = 0; i < count; i++) out = this.mutate(out);
    return out;
  }

  /** A random JSON-ish value, nested a little. */
  value(depth = 0): unknown {
    switch (this.int(depth > 2 ? 6 : 9)) {
      case 0:
        return null;
      case 1:
        return this.chance(0.5);
      case 2:
        return this.pick(INTERESTING_NUMBERS);
      case 3:
        return this.u32() - 2 ** 31;
      case 4:
        return this.string();
      case 5:
        return this.pick(INTERESTING_STRINGS);
      case 6:
        return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
      default: {
        const out: Record<string, unknown> = {};
        const n = this.int(5);
        for (let i = 0; i < n; i++) out[this.chance(0.5) ? this.pick(INTERESTING_KEYS) : this.string(8)] = this.value(depth + 1);
        return out;
      }
    }
  }

  bytes(max = 64): Buffer {
    const out = Buffer.alloc(this.int(max + 1));
    for (let i = 0; i < out.length; i++) out[i] = this.int(256);
    return out;
  }
}

export const INTERESTING_CHARS = ['"', "\\", "{", "}", "[", "]", ",", ":", "\n", "\r", "\t", "\u0000", "\u2028", "\ufeff", "é", "😀", "\ud800", "%", "/", " "];
export const INTERESTING_TOKENS = [
  "null",
  "true",
  "[]",
  "{}",
  '"',
  "\\u0000",
  "\\ud800",
  "1e309",
  "-0",
  "0.1e-400",
  "9007199254740993",
  '"__proto__":{"seq":99},',
  '"constructor":1,',
  "\n",
  "\r\n",
  "\u0000",
  "%00",
  "..",
  "//",
  "\ufeff",
];
export const INTERESTING_NUMBERS = [0, -0, 1, -1, 0.5, 1e16, 1e21, -1e-7, 2 ** 53, 2 ** 53 + 2, Number.MAX_VALUE, Number.MIN_VALUE, 1_790_000_000_000, 1.7e9, NaN, Infinity, -Infinity];
export const INTERESTING_STRINGS = ["", " ", "v1", "v2", "null", "0", "success", "failed", "start", "end", "\u0000", "a".repeat(300), "😀", "é", "e\u0301"];
export const INTERESTING_KEYS = ["seq", "active_versions", "issued_at", "expires_at", "signature", "t", "job", "pid", "key", "status", "error", "__proto__", "constructor", "toString"];
