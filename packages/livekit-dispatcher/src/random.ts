/**
 * mulberry32: a tiny seeded PRNG giving floats in [0, 1). LiveKit's server draws from Go's
 * math/rand; a seed here makes a run's worker choices reproducible in tests and chaos runs.
 */
export function seededRandom(seed: number): () => number {
  if (!Number.isSafeInteger(seed)) throw new TypeError(`seededRandom: seed must be a safe integer, got ${String(seed)}`);
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
