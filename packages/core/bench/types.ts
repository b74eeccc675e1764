/** One line of `pnpm bench` output: a measured figure and, when it has one, its goal. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  goal?: string;
  /** value / goal: ≤ 1 meets the goal. */
  ratio?: number;
}
