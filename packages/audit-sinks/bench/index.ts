/**
 * `pnpm bench` in packages/audit-sinks: runs the file-sink bench and, when present, the S3
 * bench (bench/s3.ts, exporting `benchS3(): Promise<BenchRow[]>`), then prints one table with
 * each figure's ratio against its goal. `pnpm bench file` or `pnpm bench s3` runs one of them.
 * Timing lives here, never in pass/fail tests.
 */
import { existsSync } from "node:fs";
import { formatTable } from "./bench-row.ts";
import type { BenchRow } from "./bench-row.ts";
import { benchFile } from "./file.ts";

const only = new Set(process.argv.slice(2).filter((arg) => arg !== "--"));
const wanted = (name: string): boolean => only.size === 0 || only.has(name);

const rows: BenchRow[] = [];
if (wanted("file")) rows.push(...(await benchFile()));

const s3Module = new URL("./s3.ts", import.meta.url);
if (wanted("s3") && existsSync(s3Module)) {
  const { benchS3 } = (await import(s3Module.href)) as { benchS3: () => Promise<BenchRow[]> };
  rows.push(...(await benchS3()));
}

console.log(formatTable(rows));
