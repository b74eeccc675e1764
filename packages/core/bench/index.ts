// `pnpm bench` for @openrtc/core: every figure the issues name, side by side in one run.
// Not part of the test command: timings are machine-dependent. Each section runs in a fresh
// process, so one section's heap (10,000 live sessions, say) does not tax the next one's GC.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { BenchRow } from "./types.ts";

const SECTIONS = ["membership", "sessions", "metrics", "audit", "fleet", "fleet-prometheus"] as const;
export type Section = (typeof SECTIONS)[number];

export async function runSection(section: Section): Promise<BenchRow[]> {
  switch (section) {
    case "membership":
      return (await import("./membership.ts")).benchMembership();
    case "sessions":
      return (await import("./pool.ts")).benchPool();
    case "metrics":
      return (await import("./pool.ts")).benchScrape();
    case "audit":
      return (await import("./audit.ts")).benchAudit();
    case "fleet":
      return (await import("./fleet.ts")).benchFleet();
    case "fleet-prometheus":
      return (await import("./fleet-prometheus.ts")).benchFleetPrometheus();
  }
}

const self = fileURLToPath(import.meta.url);
const only = process.argv[2] as Section | undefined;
if (only !== undefined) {
  process.stdout.write(`${JSON.stringify(await runSection(only))}\n`);
} else {
  const rows: BenchRow[] = [];
  for (const section of SECTIONS) {
    try {
      const out = execFileSync(process.execPath, [...process.execArgv, self, section], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
      rows.push(...(JSON.parse(out.trim().split("\n").at(-1) ?? "[]") as BenchRow[]));
    } catch (error) {
      rows.push({ name: `${section}: failed (${error instanceof Error ? error.message.split("\n")[0] : String(error)})`, value: Number.NaN, unit: "" });
    }
  }
  const fmt = (v: number) => (Number.isNaN(v) ? "—" : Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en-US") : v.toPrecision(3));
  const width = Math.max(...rows.map((r) => r.name.length));
  console.log(`${"figure".padEnd(width)}  ${"value".padStart(14)}  ${"unit".padEnd(8)}  ${"goal".padEnd(12)}  ratio (≤ 1 meets the goal)`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(width)}  ${fmt(r.value).padStart(14)}  ${r.unit.padEnd(8)}  ${(r.goal ?? "").padEnd(12)}  ${r.ratio === undefined ? "" : `${r.ratio.toFixed(2)}×`}`);
  }
}
