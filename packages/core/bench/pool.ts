import { performance } from "node:perf_hooks";
import { AgentPool } from "../src/pool.ts";
import { silentLogger } from "../src/logger.ts";
import type { BenchRow } from "./types.ts";

const LIVE = 10_000;
const TENANTS = 1_000;
const PAIRS = 300_000;

function loadedPool(maxTenantLabels?: number): AgentPool {
  const pool = new AgentPool({
    deploymentVersion: "v1.0.0",
    logger: silentLogger,
    ...(maxTenantLabels === undefined ? {} : { metrics: { maxTenantLabels } }),
  });
  for (let i = 0; i < LIVE; i++) pool.startSession({ jobId: `live-${i}`, agentName: "support", metadata: { tenant: `t${i % TENANTS}` } });
  return pool;
}

function best(runs: number, fn: () => number): number {
  let out = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) out = Math.min(out, fn());
  return out;
}

/** startSession+end pairs/s at 10,000 live sessions over 1,000 tenants, vs raw Map set+delete. */
export function benchPool(): BenchRow[] {
  const pool = loadedPool();
  const metadata = Array.from({ length: TENANTS }, (_, i) => ({ tenant: `t${i}` }));
  const ids = Array.from({ length: PAIRS }, (_, i) => `job-${i}`);
  const pairSeconds = best(5, () => {
    const t0 = performance.now();
    for (let i = 0; i < PAIRS; i++) {
      pool.startSession({ jobId: ids[i]!, agentName: "support", metadata: metadata[i % TENANTS] }).end({ status: "success" });
    }
    return (performance.now() - t0) / 1000;
  });
  const map = new Map<string, object>();
  for (let i = 0; i < LIVE; i++) map.set(`live-${i}`, {});
  const mapSeconds = best(5, () => {
    const t0 = performance.now();
    for (let i = 0; i < PAIRS; i++) {
      map.set(ids[i]!, metadata[i % TENANTS]!);
      map.delete(ids[i]!);
    }
    return (performance.now() - t0) / 1000;
  });
  const pairsPerSecond = PAIRS / pairSeconds;
  const mapPerSecond = PAIRS / mapSeconds;

  const snapshotMs = best(200, () => {
    const t0 = performance.now();
    pool.runtimeSnapshot().toJSON();
    return performance.now() - t0;
  });
  return [
    { name: "startSession+end pairs/s (10k live, 1k tenants, metrics+trace on)", value: Math.round(pairsPerSecond), unit: "pairs/s", goal: "≥ 200000", ratio: 200_000 / pairsPerSecond },
    { name: "raw Map set+delete pairs/s (same loop)", value: Math.round(mapPerSecond), unit: "pairs/s" },
    { name: "pool pairs vs raw Map", value: pairsPerSecond / mapPerSecond, unit: "×" },
    { name: "runtimeSnapshot().toJSON() at 10k live sessions", value: snapshotMs, unit: "ms", goal: "≤ 1", ratio: snapshotMs / 1 },
  ];
}

/** `/metrics` exposition time at 10,000 live sessions over 1,000 tenants. */
export async function benchScrape(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const [label, cap] of [["default tenant cap (100)", undefined], ["tenant cap 1000 (every tenant labelled)", 1000]] as const) {
    const pool = loadedPool(cap);
    await pool.metrics.scrape();
    let bestMs = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      await pool.metrics.scrape();
      bestMs = Math.min(bestMs, performance.now() - t0);
    }
    rows.push({ name: `/metrics scrape, 10k live, 1k tenants, ${label}`, value: bestMs, unit: "ms", goal: "≤ 20", ratio: bestMs / 20 });
  }
  return rows;
}
