import { PassThrough } from "node:stream";
import { describe, expect, test } from "vitest";
import { LiveTable, renderTable, type TableRow } from "./table.ts";

const row = (over: Partial<TableRow> = {}): TableRow => ({
  worker: "v1.0.0-a1",
  pid: 42,
  deployment_version: "v1.0.0",
  draining: "true",
  active_sessions: "3",
  member: "false",
  started: "7",
  state: "draining",
  ...over,
});

describe("renderTable", () => {
  test("shows the three deploy signals per worker, aligned", () => {
    const lines = renderTable({ phase: "drain_v1", callsDispatched: 5, callsTotal: 40, manifest: ["v2.0.0"] }, [row(), row({ worker: "v2.0.0-a1", deployment_version: "v2.0.0", draining: "false", active_sessions: "12" })]);
    expect(lines[0]).toBe("phase drain_v1   calls dispatched 5/40   manifest {v2.0.0}");
    expect(lines[1]).toMatch(/^worker\s+pid\s+deployment_version\s+draining\s+active_sessions\s+member\s+calls_taken\s+state$/);
    const col = lines[1]!.indexOf("active_sessions");
    expect(lines[2]!.slice(col).startsWith("3 ")).toBe(true);
    expect(lines[3]!.slice(col).startsWith("12")).toBe(true);
  });
});

function capture(isTTY: boolean) {
  const out = new PassThrough() as PassThrough & { isTTY?: boolean };
  out.isTTY = isTTY;
  let text = "";
  out.on("data", (c: Buffer) => (text += c.toString()));
  return { out, text: () => text };
}

describe("LiveTable", () => {
  test("not a TTY: plain blocks, no escape codes, nothing repeated when unchanged", () => {
    const { out, text } = capture(false);
    let phase = "traffic";
    const table = new LiveTable({ out, plainIntervalMs: 60_000, source: () => ({ header: { phase, callsDispatched: 0, callsTotal: 1, manifest: [] }, rows: [row()] }) });
    table.start();
    table.draw();
    phase = "done";
    table.draw();
    table.stop();
    expect(text()).not.toContain("\x1b[");
    expect(text().match(/^phase /gm)).toHaveLength(2);
  });

  test("TTY: redraws in place (cursor up over the previous table)", () => {
    const { out, text } = capture(true);
    let n = 0;
    const table = new LiveTable({ out, intervalMs: 60_000, source: () => ({ header: { phase: "x", callsDispatched: n, callsTotal: 9, manifest: [] }, rows: [row()] }) });
    table.start();
    n = 1;
    table.draw();
    table.note("a progress line");
    table.stop();
    expect(text()).toContain("\x1b[3A\x1b[0J");
    expect(text()).toContain("a progress line\n");
  });
});
