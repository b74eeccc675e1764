/**
 * A bounded uniform sample of per-call values (Vitter's Algorithm R), for the significance test.
 *
 * Why a reservoir at all: a rank test needs values, and the sketch keeps only bucket counts.
 * Why bounded: a busy fleet has millions of calls; 512 per metric per bucket is plenty for a
 * Mann-Whitney test (its power at n = 512 is already far past what a deploy decision needs) and
 * keeps a bucket at a few KiB. Merging two reservoirs draws from each in proportion to how many
 * values it has seen, so the merged reservoir is again a uniform sample of the union.
 */

export const DEFAULT_RESERVOIR_CAPACITY = 512;

/** mulberry32: small, fast, seedable; the sample must be reproducible in tests and benches. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ReservoirJSON {
  readonly capacity: number;
  readonly seen: number;
  readonly values: readonly number[];
}

export class Reservoir {
  readonly capacity: number;
  private readonly random: () => number;
  private values: number[] = [];
  private _seen = 0;

  constructor(capacity = DEFAULT_RESERVOIR_CAPACITY, random: () => number = Math.random) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`reservoir capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.random = random;
  }

  /** How many values were offered (the sample holds at most `capacity` of them). */
  get seen(): number {
    return this._seen;
  }

  get size(): number {
    return this.values.length;
  }

  sample(): readonly number[] {
    return this.values;
  }

  add(value: number): boolean {
    if (!Number.isFinite(value)) return false;
    this._seen++;
    if (this.values.length < this.capacity) {
      this.values.push(value);
    } else {
      const j = Math.floor(this.random() * this._seen);
      if (j < this.capacity) this.values[j] = value;
    }
    return true;
  }

  /**
   * Replaces this sample with a uniform sample of (this ∪ other): each slot comes from a side with
   * probability proportional to the values that side has seen and not yet given.
   */
  merge(other: Reservoir): this {
    const total = this._seen + other._seen;
    if (other._seen === 0) return this;
    if (total <= this.capacity) {
      this.values = [...this.values, ...other.values];
      this._seen = total;
      return this;
    }
    const a = shuffled(this.values, this.random);
    const b = shuffled([...other.values], this.random);
    let remainingA = this._seen;
    let remainingB = other._seen;
    const merged: number[] = [];
    while (merged.length < this.capacity && (a.length > 0 || b.length > 0)) {
      const fromA = b.length === 0 || (a.length > 0 && this.random() * (remainingA + remainingB) < remainingA);
      if (fromA) {
        merged.push(a.pop() as number);
        remainingA--;
      } else {
        merged.push(b.pop() as number);
        remainingB--;
      }
    }
    this.values = merged;
    this._seen = total;
    return this;
  }

  toJSON(): ReservoirJSON {
    return { capacity: this.capacity, seen: this._seen, values: [...this.values] };
  }

  static fromJSON(json: unknown, random: () => number = Math.random): Reservoir {
    if (typeof json !== "object" || json === null) throw new TypeError("reservoir JSON must be an object");
    const j = json as Partial<ReservoirJSON>;
    if (typeof j.capacity !== "number" || typeof j.seen !== "number" || !Array.isArray(j.values)) throw new TypeError("reservoir JSON needs capacity, seen and values");
    if (j.values.length > j.capacity || j.values.length > j.seen || !j.values.every((v) => typeof v === "number" && Number.isFinite(v))) {
      throw new TypeError("reservoir JSON values are inconsistent with its capacity or seen count");
    }
    const r = new Reservoir(j.capacity, random);
    r.values = [...j.values];
    r._seen = j.seen;
    return r;
  }
}

function shuffled(values: readonly number[], random: () => number): number[] {
  const out = [...values];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const tmp = out[i] as number;
    out[i] = out[j] as number;
    out[j] = tmp;
  }
  return out;
}
