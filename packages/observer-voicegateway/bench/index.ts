/**
 * `pnpm bench`: the figures the issue asks for, from seeded randomness (same numbers every run).
 *  1. the sketch's measured relative error vs exact quantiles, and memory per bucket;
 *  2. compare's false-alarm rate over 1,000 no-shift trials (200 calls per side);
 *  3. its detection rate for a 20% p95 shift at 200 calls per side (TTS TTFB × 1.2, which moves
 *     every quantile, p95 included, by 20%; and e2e latency × 1.2).
 */
import { Bucket, compare, DDSketch, InMemoryStore, seededRandom } from "../src/index.ts";
import { gaussian, syntheticCalls, type SyntheticProfile } from "../src/testing/synthetic.ts";

function sketchError(): void {
  const random = seededRandom(42);
  const dists: Record<string, () => number> = {
    "lognormal(ln 300 ms, 0.6)": () => 300 * Math.exp(0.6 * gaussian(random)),
    "pareto(α=1.5, 50 ms)": () => 50 / Math.pow(1 - random(), 1 / 1.5),
    "uniform(0, 10 s)": () => 10_000 * random(),
  };
  console.log("1. DDSketch (relative accuracy α = 0.01), 100,000 values per distribution");
  console.log("   distribution                 max rel. error over q ∈ {.5,.9,.95,.99,.999}   buckets   bytes (JSON)");
  for (const [name, draw] of Object.entries(dists)) {
    const values = Array.from({ length: 100_000 }, draw);
    const s = new DDSketch();
    for (const v of values) s.add(v);
    const sorted = Float64Array.from(values).sort();
    let worst = 0;
    for (const q of [0.5, 0.9, 0.95, 0.99, 0.999]) {
      const exact = sorted[Math.floor(q * (sorted.length - 1))] as number;
      worst = Math.max(worst, Math.abs((s.quantile(q) as number) - exact) / exact);
    }
    console.log(`   ${name.padEnd(28)} ${(worst * 100).toFixed(3).padStart(8)}%                                    ${String(s.bucketCount).padStart(5)}   ${Buffer.byteLength(JSON.stringify(s.toJSON()))}`);
  }
  for (const calls of [200, 10_000]) {
    const r = seededRandom(7);
    const b = new Bucket({ version: "v", tenant: "t", agent: "a" }, { random: r });
    for (const c of syntheticCalls({ version: "v" }, calls, r)) b.add(c);
    const buckets = [...b.sketches.values()].reduce((n, s) => n + s.bucketCount, 0);
    const samples = [...b.reservoirs.values()].reduce((n, r) => n + r.size, 0);
    // Retained state: sketch buckets (key + count) and reservoir samples (one double each).
    console.log(`   bucket after ${String(calls).padStart(6)} calls (7 metrics): ${buckets} sketch buckets + ${samples} reservoir samples ≈ ${((buckets * 16 + samples * 8) / 1024).toFixed(1)} KiB of numbers; ${(b.approximateBytes() / 1024).toFixed(1)} KiB as JSON`);
  }
}

function trials(label: string, candidate: Omit<SyntheticProfile, "version">, n: number, count: number, seed: number): void {
  const random = seededRandom(seed);
  const verdicts: Record<string, number> = { promote: 0, escalate: 0, roll_back: 0, insufficient_data: 0 };
  const perMetric: Record<string, number> = {};
  const started = Date.now();
  for (let t = 0; t < count; t++) {
    const store = new InMemoryStore({ random });
    for (const c of syntheticCalls({ version: "base" }, n, random)) store.record(c);
    for (const c of syntheticCalls({ version: "cand", ...candidate }, n, random)) store.record(c);
    const r = compare(store, { base: "base", candidate: "cand" });
    verdicts[r.verdict]!++;
    for (const m of r.metrics) if (m.significant) perMetric[m.name] = (perMetric[m.name] ?? 0) + 1;
  }
  const flagged = count - verdicts["promote"]!;
  console.log(`   ${label}: ${count} trials × ${n} calls per side (${((Date.now() - started) / count).toFixed(1)} ms per compare)`);
  console.log(`     not promote: ${flagged}/${count} = ${((100 * flagged) / count).toFixed(1)}%   (roll_back ${verdicts["roll_back"]}, escalate ${verdicts["escalate"]}, promote ${verdicts["promote"]})`);
  console.log(`     significant per metric: ${Object.entries(perMetric).map(([k, v]) => `${k} ${((100 * v) / count).toFixed(1)}%`).join(", ") || "none"}`);
}

sketchError();
console.log("\n2. compare's false-alarm rate (defaults: confidence 0.98 for the verdict, Bonferroni over 7 tests, tolerance 10%, hard latency 20%, outliers > 3 IQR removed)");
trials("no shift", {}, 200, 1000, 1);
console.log("\n3. detection rate for a 20% p95 shift");
trials("TTS TTFB × 1.2", { ttfbShift: 1.2 }, 200, 1000, 2);
trials("e2e turn latency × 1.2", { e2eShift: 1.2 }, 200, 1000, 3);
console.log("\n   (reference) smaller samples and shifts:");
trials("TTS TTFB × 1.2 at 50 calls per side", { ttfbShift: 1.2 }, 50, 300, 4);
trials("TTS TTFB × 1.1 at 200 calls per side", { ttfbShift: 1.1 }, 200, 300, 5);
