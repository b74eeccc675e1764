/**
 * A DDSketch (Masson, Rim, Lee, VLDB 2019): a quantile sketch with a relative-error guarantee.
 *
 * Why this one: voice latencies span 50 ms to 10 s, so an absolute-error sketch is either too
 * coarse for TTFB or too big for call durations; and buckets from many job processes and many
 * workers must merge into exactly the sketch that one process would have built from all the
 * values (merge = union), which DDSketch gives by construction (bucket counts add up).
 *
 * Guarantee: for any quantile q, `quantile(q)` is within a factor (1 ± alpha) of the value of
 * rank ⌊q·(n−1)⌋ of the values added, as long as no bucket was collapsed (see `maxBuckets`).
 * Values must be ≥ 0; values below `minValue` are counted in a zero bucket (reported as 0).
 */

export const DEFAULT_RELATIVE_ACCURACY = 0.01;
/**
 * 2048 buckets at alpha = 1% cover 1e-6 .. 1e11 (log_gamma range ≈ 40 decades / 0.0087), i.e.
 * every latency and duration we record, so in practice no bucket is ever collapsed.
 */
export const DEFAULT_MAX_BUCKETS = 2048;
const DEFAULT_MIN_VALUE = 1e-9;

export interface DDSketchOptions {
  relativeAccuracy?: number;
  maxBuckets?: number;
}

export interface DDSketchJSON {
  readonly alpha: number;
  readonly maxBuckets: number;
  readonly zeroCount: number;
  /** Bucket index → count, as parallel arrays (compact and order-stable). */
  readonly keys: readonly number[];
  readonly counts: readonly number[];
  readonly count: number;
  readonly sum: number;
  readonly min: number | null;
  readonly max: number | null;
  /** Counts that were folded into the lowest kept bucket because of `maxBuckets`. */
  readonly collapsed: number;
}

export class SketchMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SketchMismatchError";
  }
}

export class DDSketch {
  readonly alpha: number;
  readonly maxBuckets: number;
  private readonly gamma: number;
  private readonly logGamma: number;
  private readonly buckets = new Map<number, number>();
  private zeroCount = 0;
  private _count = 0;
  private _sum = 0;
  private _min = Number.POSITIVE_INFINITY;
  private _max = Number.NEGATIVE_INFINITY;
  private _collapsed = 0;

  constructor(options: DDSketchOptions = {}) {
    const alpha = options.relativeAccuracy ?? DEFAULT_RELATIVE_ACCURACY;
    if (!(alpha > 0 && alpha < 1)) throw new RangeError(`relativeAccuracy must be in (0, 1), got ${alpha}`);
    const maxBuckets = options.maxBuckets ?? DEFAULT_MAX_BUCKETS;
    if (!Number.isInteger(maxBuckets) || maxBuckets < 16) throw new RangeError(`maxBuckets must be an integer ≥ 16, got ${maxBuckets}`);
    this.alpha = alpha;
    this.maxBuckets = maxBuckets;
    this.gamma = (1 + alpha) / (1 - alpha);
    this.logGamma = Math.log(this.gamma);
  }

  get count(): number {
    return this._count;
  }
  get sum(): number {
    return this._sum;
  }
  get min(): number | null {
    return this._count === 0 ? null : this._min;
  }
  get max(): number | null {
    return this._count === 0 ? null : this._max;
  }
  get mean(): number | null {
    return this._count === 0 ? null : this._sum / this._count;
  }
  /** Number of non-empty buckets (the sketch's size is O(this)). */
  get bucketCount(): number {
    return this.buckets.size + (this.zeroCount > 0 ? 1 : 0);
  }
  /** Whether any bucket was collapsed (the low quantiles then lose the guarantee). */
  get collapsed(): number {
    return this._collapsed;
  }

  /** Adds `value` `weight` times. Non-finite and negative values are ignored and reported. */
  add(value: number, weight = 1): boolean {
    if (!Number.isFinite(value) || value < 0 || !(weight > 0) || !Number.isFinite(weight)) return false;
    if (value < DEFAULT_MIN_VALUE) {
      this.zeroCount += weight;
    } else {
      const key = Math.ceil(Math.log(value) / this.logGamma);
      this.buckets.set(key, (this.buckets.get(key) ?? 0) + weight);
      if (this.buckets.size > this.maxBuckets) this.collapseLowest();
    }
    this._count += weight;
    this._sum += value * weight;
    if (value < this._min) this._min = value;
    if (value > this._max) this._max = value;
    return true;
  }

  /**
   * The q-quantile (0 ≤ q ≤ 1) using the lower rank ⌊q·(n−1)⌋, as DDSketch's reference
   * implementations do; `null` when empty. Clamped to [min, max], which only tightens the bound.
   */
  quantile(q: number): number | null {
    if (!(q >= 0 && q <= 1) || this._count === 0) return null;
    const rank = Math.floor(q * (this._count - 1));
    let seen = this.zeroCount;
    if (rank < seen) return 0;
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      seen += this.buckets.get(key) ?? 0;
      if (rank < seen) {
        const estimate = (2 * Math.pow(this.gamma, key)) / (this.gamma + 1);
        return Math.min(this._max, Math.max(this._min, estimate));
      }
    }
    return this._max;
  }

  /** Adds every value of `other` into this sketch (exactly the sketch of the union). */
  merge(other: DDSketch): this {
    if (other.alpha !== this.alpha) throw new SketchMismatchError(`cannot merge sketches with relative accuracy ${other.alpha} and ${this.alpha}`);
    for (const [key, count] of other.buckets) this.buckets.set(key, (this.buckets.get(key) ?? 0) + count);
    while (this.buckets.size > this.maxBuckets) this.collapseLowest();
    this.zeroCount += other.zeroCount;
    this._count += other._count;
    this._sum += other._sum;
    this._collapsed += other._collapsed;
    if (other._count > 0) {
      this._min = Math.min(this._min, other._min);
      this._max = Math.max(this._max, other._max);
    }
    return this;
  }

  clone(): DDSketch {
    return DDSketch.fromJSON(this.toJSON());
  }

  toJSON(): DDSketchJSON {
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    return {
      alpha: this.alpha,
      maxBuckets: this.maxBuckets,
      zeroCount: this.zeroCount,
      keys,
      counts: keys.map((k) => this.buckets.get(k) ?? 0),
      count: this._count,
      sum: this._sum,
      min: this.min,
      max: this.max,
      collapsed: this._collapsed,
    };
  }

  /** Rebuilds a sketch from `toJSON()`; throws `SketchMismatchError` on a malformed object. */
  static fromJSON(json: unknown): DDSketch {
    if (typeof json !== "object" || json === null) throw new SketchMismatchError("sketch JSON must be an object");
    const j = json as Partial<DDSketchJSON>;
    if (typeof j.alpha !== "number" || !Array.isArray(j.keys) || !Array.isArray(j.counts) || j.keys.length !== j.counts.length) {
      throw new SketchMismatchError("sketch JSON needs alpha and keys/counts of equal length");
    }
    const sketch = new DDSketch({ relativeAccuracy: j.alpha, maxBuckets: typeof j.maxBuckets === "number" ? j.maxBuckets : DEFAULT_MAX_BUCKETS });
    let total = 0;
    for (let i = 0; i < j.keys.length; i++) {
      const key = j.keys[i];
      const count = j.counts[i];
      if (!Number.isInteger(key) || typeof count !== "number" || !(count > 0)) throw new SketchMismatchError(`bad bucket ${i}`);
      sketch.buckets.set(key as number, count);
      total += count;
    }
    const zero = typeof j.zeroCount === "number" && j.zeroCount >= 0 ? j.zeroCount : 0;
    sketch.zeroCount = zero;
    total += zero;
    if (typeof j.count !== "number" || Math.abs(j.count - total) > 1e-9 * Math.max(1, total)) {
      throw new SketchMismatchError(`sketch count ${String(j.count)} does not match its buckets (${total})`);
    }
    sketch._count = j.count;
    sketch._sum = typeof j.sum === "number" ? j.sum : 0;
    sketch._min = typeof j.min === "number" ? j.min : Number.POSITIVE_INFINITY;
    sketch._max = typeof j.max === "number" ? j.max : Number.NEGATIVE_INFINITY;
    sketch._collapsed = typeof j.collapsed === "number" ? j.collapsed : 0;
    return sketch;
  }

  /** Folds the lowest bucket into the next one up: keeps memory bounded, sacrifices low quantiles first. */
  private collapseLowest(): void {
    let lowest = Number.POSITIVE_INFINITY;
    let second = Number.POSITIVE_INFINITY;
    for (const key of this.buckets.keys()) {
      if (key < lowest) {
        second = lowest;
        lowest = key;
      } else if (key < second) second = key;
    }
    const count = this.buckets.get(lowest) ?? 0;
    this.buckets.delete(lowest);
    this.buckets.set(second, (this.buckets.get(second) ?? 0) + count);
    this._collapsed += count;
  }
}
