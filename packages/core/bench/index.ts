// `pnpm bench` for @openrtc/core: every figure the issues name, side by side in one run.
// Not part of the test command: timings are machine-dependent.
import type { BenchRow } from "./types.ts";
import { benchPool, benchScrape } from "./pool.ts";

const rows: BenchRow[] = [];
const sections: [string, () => BenchRow[] | Promise<BenchRow[]>][] = [
  ["membership", async () => (await import("./membership.ts")).benchMembership()],
  ["sessions", benchPool],
  ["metrics", benchScrape],
  ["audit", async () => (await import("./audit.ts")).benchAudit()],
];
for (const [section, run] of sections) {
  try {
    rows.push(...(await run()));
  } catch (error) {
    rows.push({ name: `${section}: failed (${error instanceof Error ? error.message : String(error)})`, value: Number.NaN, unit: "" });
  }
}

const fmt = (v: number) => (Number.isNaN(v) ? "—" : Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en-US") : v.toPrecision(3));
const width = Math.max(...rows.map((r) => r.name.length));
console.log(`${"figure".padEnd(width)}  ${"value".padStart(14)}  ${"unit".padEnd(8)}  ${"goal".padEnd(12)}  ratio`);
for (const r of rows) {
  console.log(`${r.name.padEnd(width)}  ${fmt(r.value).padStart(14)}  ${r.unit.padEnd(8)}  ${(r.goal ?? "").padEnd(12)}  ${r.ratio === undefined ? "" : `${r.ratio.toFixed(2)}×`}`);
}
