// The live fleet table: one row per worker with the three deploy signals from its snapshot
// (deployment_version, draining, active_sessions). On a TTY it redraws in place; otherwise it
// prints a plain block every few seconds (CI logs, pipes), and only when something changed.
import type { WorkerProcess } from "./fleet.ts";

export interface TableRow {
  worker: string;
  pid: number;
  deployment_version: string;
  draining: string;
  active_sessions: string;
  member: string;
  started: string;
  state: string;
}

export interface TableHeader {
  phase: string;
  callsDispatched: number;
  callsTotal: number;
  manifest: readonly string[];
}

export function rowOf(w: WorkerProcess): TableRow {
  const s = w.snapshot;
  const state = w.exit !== undefined ? `exited ${w.exit.code ?? w.exit.signal}` : (s?.state ?? w.state);
  return {
    worker: w.name,
    pid: w.pid,
    deployment_version: s?.deployment_version ?? w.version,
    draining: s === undefined ? "-" : String(s.draining),
    active_sessions: s === undefined ? "-" : String(w.exit !== undefined && w.droppedSessions === 0 ? 0 : s.active_sessions),
    member: s === undefined ? "-" : String(s.member),
    started: s === undefined ? "-" : String(s.total_sessions_started),
    state,
  };
}

const COLUMNS: readonly (keyof TableRow)[] = ["worker", "pid", "deployment_version", "draining", "active_sessions", "member", "started", "state"];
const TITLES: Record<keyof TableRow, string> = {
  worker: "worker",
  pid: "pid",
  deployment_version: "deployment_version",
  draining: "draining",
  active_sessions: "active_sessions",
  member: "member",
  started: "calls_taken",
  state: "state",
};

/** Renders the table as lines (no trailing newline). Pure, so it is testable without a terminal. */
export function renderTable(header: TableHeader, rows: readonly TableRow[]): string[] {
  const widths = COLUMNS.map((c) => Math.max(TITLES[c].length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd();
  return [
    `phase ${header.phase}   calls dispatched ${header.callsDispatched}/${header.callsTotal}   manifest {${header.manifest.join(",")}}`,
    line(COLUMNS.map((c) => TITLES[c])),
    ...rows.map((r) => line(COLUMNS.map((c) => String(r[c])))),
  ];
}

export interface LiveTableOptions {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  /** Redraw (TTY) interval. Default 200 ms. */
  intervalMs?: number;
  /** Plain-mode interval. Default 2000 ms. */
  plainIntervalMs?: number;
  source: () => { header: TableHeader; rows: TableRow[] };
}

export class LiveTable {
  readonly #o: LiveTableOptions;
  readonly #tty: boolean;
  #timer: NodeJS.Timeout | undefined;
  #drawn = 0;
  #last = "";

  constructor(options: LiveTableOptions) {
    this.#o = options;
    this.#tty = options.out.isTTY === true;
  }

  start(): void {
    const every = this.#tty ? (this.#o.intervalMs ?? 200) : (this.#o.plainIntervalMs ?? 2000);
    this.#timer = setInterval(() => this.draw(), every);
    this.#timer.unref();
    this.draw();
  }

  /** Prints a line above the table (progress messages) without breaking the redraw. */
  note(text: string): void {
    if (this.#tty) this.#clear();
    this.#o.out.write(`${text}\n`);
    if (this.#tty) this.draw(true);
  }

  draw(force = false): void {
    const { header, rows } = this.#o.source();
    const lines = renderTable(header, rows);
    const text = lines.join("\n");
    if (!force && text === this.#last) return;
    this.#last = text;
    if (this.#tty) {
      this.#clear();
      this.#o.out.write(`${text}\n`);
      this.#drawn = lines.length;
    } else {
      this.#o.out.write(`${text}\n\n`);
    }
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.draw();
    this.#drawn = 0;
  }

  #clear(): void {
    // Cursor up over the previous table, then clear to the end of the screen.
    if (this.#drawn > 0) this.#o.out.write(`\x1b[${this.#drawn}A\x1b[0J`);
    this.#drawn = 0;
  }
}
