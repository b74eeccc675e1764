/**
 * One measured figure of `pnpm bench`. Bench modules of this package (file, s3, ...) return
 * rows; bench/index.ts prints them as one table with the ratio against each goal.
 */
export interface BenchRow {
  /** What was measured, e.g. "file sink (AuditLog + fsync)". */
  name: string;
  value: number;
  /** e.g. "records/s", "ms", "x". */
  unit: string;
  /** The goal the value is judged against, if any. */
  goal?: {
    value: number;
    /** True when bigger values are better (throughput), false for latencies. */
    higherIsBetter: boolean;
    /** How the goal reads, e.g. "≥ 1.0× pino async". */
    label?: string;
  };
  note?: string;
}

/** value/goal for higher-is-better rows, goal/value otherwise: ≥ 1 means the goal is met. */
export function goalRatio(row: BenchRow): number | undefined {
  if (row.goal === undefined) return undefined;
  return row.goal.higherIsBetter ? row.value / row.goal.value : row.goal.value / row.value;
}

export function formatTable(rows: readonly BenchRow[]): string {
  const header = ["bench", "value", "unit", "goal", "ratio vs goal", "met", "note"];
  const body = rows.map((row) => {
    const ratio = goalRatio(row);
    return [
      row.name,
      formatNumber(row.value),
      row.unit,
      row.goal === undefined ? "" : (row.goal.label ?? `${row.goal.higherIsBetter ? "≥" : "≤"} ${formatNumber(row.goal.value)}`),
      ratio === undefined ? "" : `${ratio.toFixed(2)}×`,
      ratio === undefined ? "" : ratio >= 1 ? "yes" : "NO",
      row.note ?? "",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] as string).length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...body.map(line)].join("\n");
}

function formatNumber(value: number): string {
  if (Number.isInteger(value) || Math.abs(value) >= 100) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(2);
}
