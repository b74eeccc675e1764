// The shipped Prometheus rules and Grafana dashboard, checked with the real promtool.
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DASHBOARD_FILE,
  RULES_FILE,
  RULES_TEST_FILE,
  CONTRACT_METRICS,
  ToolMissingError,
  grafanaToPromQL,
  requireTool,
  runTool,
} from "../test/prometheus.ts";


const EXPECTED_ALERTS = [
  "OpenRTCDrainStuck",
  "OpenRTCDroppedCalls",
  "OpenRTCWorkerVanishedWithSessions",
  "OpenRTCTwoVersionsServing",
];

const rulesText = await readFile(RULES_FILE, "utf8");
const rulesTestText = await readFile(RULES_TEST_FILE, "utf8");
const recordNames = [...rulesText.matchAll(/^\s*- record: (\S+)$/gm)].map((m) => m[1] as string);
const alertNames = [...rulesText.matchAll(/^\s*- alert: (\S+)$/gm)].map((m) => m[1] as string);

/** Names a PromQL expression uses that are neither contract metrics nor our recording rules. */
function unknownMetricNames(expr: string, recordingRules: readonly string[]): string[] {
  const known = new Set([...CONTRACT_METRICS, ...recordingRules]);
  const tokens = expr.match(/openrtc(?:_[a-z_]+|:[a-z_:]+)/g) ?? [];
  return [...new Set(tokens.filter((token) => !known.has(token)))];
}

const scratchDirs: string[] = [];
async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "openrtc-observability-"));
  scratchDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(scratchDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe("prometheus tools", () => {
  it("are required, and a missing one fails with the setup command", () => {
    expect(() => requireTool("promtool", "/nonexistent-openrtc-dir")).toThrow(ToolMissingError);
    expect(() => requireTool("promtool", "")).toThrow(/pnpm setup.*bash scripts\/dev\.sh setup/);
    // Not a skip: on a machine without promtool this fails with that same message.
    expect(requireTool("promtool")).toMatch(/promtool$/);
  });
});

describe("openrtc.rules.yml", () => {
  it("defines the recording rules and alerts the dashboard and docs name", () => {
    expect(recordNames).toEqual([
      "openrtc:worker_active_sessions",
      "openrtc:workers:count_by_version",
      "openrtc:active_sessions:sum_by_version",
      "openrtc:draining_workers:count_by_version",
      "openrtc:draining_active_sessions:sum_by_version",
      "openrtc:jobs_rejected:rate_by_reason",
      "openrtc:accepting_workers:count_by_version",
      "openrtc:versions_accepting:count",
    ]);
    expect(alertNames).toEqual(EXPECTED_ALERTS);
  });

  it("uses only contract metric names", () => {
    expect(unknownMetricNames(rulesText, recordNames)).toEqual([]);
    expect(unknownMetricNames(rulesText, [])).not.toEqual([]);
  });

  it("passes promtool check rules", async () => {
    const result = await runTool(requireTool("promtool"), ["check", "rules", RULES_FILE]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`SUCCESS: ${recordNames.length + alertNames.length} rules found`);
  });

  it("passes its promtool unit tests", async () => {
    const result = await runTool(requireTool("promtool"), ["test", "rules", RULES_TEST_FILE], {
      cwd: dirname(RULES_TEST_FILE),
    });
    expect(result.stdout + result.stderr).not.toContain("FAILED");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Unit Testing:\s+\S*openrtc\.rules\.test\.yml\s+SUCCESS/);
  });

  it("has unit tests for every recording rule's value and every alert firing and not firing", () => {
    for (const name of recordNames) {
      expect(rulesTestText, `no promql_expr_test for ${name}`).toMatch(
        new RegExp(`- expr: ${name}\\n\\s+eval_time: \\S+\\n\\s+exp_samples:\\n\\s+- labels: '${name}`),
      );
    }
    const cases = [...rulesTestText.matchAll(/- alertname: (\S+)\n\s+eval_time: \S+\n\s+exp_alerts:( \[\])?/g)];
    for (const name of alertNames) {
      const own = cases.filter((m) => m[1] === name);
      expect(own.some((m) => m[2] === undefined), `${name} never tested firing`).toBe(true);
      expect(own.some((m) => m[2] === " []"), `${name} never tested quiet`).toBe(true);
    }
  });

  it("makes promtool fail when an expectation is wrong (the unit tests can fail)", async () => {
    const dir = await scratch();
    await copyFile(RULES_FILE, join(dir, "openrtc.rules.yml"));
    // v1 holds 6 live sessions in the switchover fixture; claim 7.
    const broken = rulesTestText.replace(
      "'openrtc:active_sessions:sum_by_version{deployment_version=\"v1\"}'\n            value: 6",
      "'openrtc:active_sessions:sum_by_version{deployment_version=\"v1\"}'\n            value: 7",
    );
    expect(broken).not.toBe(rulesTestText);
    await writeFile(join(dir, "openrtc.rules.test.yml"), broken);
    const result = await runTool(requireTool("promtool"), ["test", "rules", "openrtc.rules.test.yml"], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).toContain("FAILED");
    expect(result.stdout + result.stderr).toContain("openrtc:active_sessions:sum_by_version");
  });

  it("makes promtool check rules fail on a PromQL syntax error", async () => {
    const dir = await scratch();
    const file = join(dir, "broken.rules.yml");
    await writeFile(file, rulesText.replace("count by (deployment_version) (openrtc_worker_info)", "count by (deployment_version (openrtc_worker_info)"));
    const result = await runTool(requireTool("promtool"), ["check", "rules", file]);
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).toContain("FAILED");
  });
});

interface DashboardTarget {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface DashboardPanel {
  id: number;
  type: string;
  gridPos: { x: number; y: number; w: number; h: number };
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: DashboardPanel[];
  templating: { list: Array<{ name: string; type: string; query: string }> };
}

describe("grafana/openrtc-deploy.json", async () => {
  const dashboard = JSON.parse(await readFile(DASHBOARD_FILE, "utf8")) as Dashboard;
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]).filter((p) => p.type !== "row");
  const exprs = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr ?? "" })));

  it("is a current-schema dashboard with a templated Prometheus datasource", () => {
    expect(dashboard.uid).toBe("openrtc-deploy");
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }));
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(panel.targets?.length, `${panel.title} has no query`).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        expect(target.datasource, panel.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      }
    }
  });

  it("lays its panels out on the 24-column grid without overlaps", () => {
    const all = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
    const ids = all.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const [i, a] of all.entries()) {
      expect(a.gridPos.x + a.gridPos.w, a.title).toBeLessThanOrEqual(24);
      for (const b of all.slice(i + 1)) {
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });

  it("queries only contract metrics and the recording rules", () => {
    expect(exprs.length).toBeGreaterThan(0);
    for (const { panel, expr } of exprs) {
      expect(expr, panel).toMatch(/openrtc[_:]/);
      expect(unknownMetricNames(expr, recordNames), `${panel}: ${expr}`).toEqual([]);
    }
  });

  it("the name check rejects a name outside the contract", () => {
    expect(unknownMetricNames("sum(openrtc_active_session) + openrtc:workers:count", recordNames)).toEqual([
      "openrtc_active_session",
      "openrtc:workers:count",
    ]);
    expect(unknownMetricNames("sum(openrtc_active_sessions) + openrtc:workers:count_by_version", recordNames)).toEqual([]);
  });

  it("has panels for versions, draining workers, live sessions per version, rejections and drops", () => {
    const required: Array<[RegExp, string]> = [
      [/^Workers per version$/, "openrtc:workers:count_by_version"],
      [/^Versions accepting new calls$/, "openrtc:versions_accepting:count"],
      [/^Draining workers per version$/, "openrtc:draining_workers:count_by_version"],
      [/^Live sessions per version$/, "openrtc:active_sessions:sum_by_version"],
      [/^Live sessions on draining workers per version$/, "openrtc:draining_active_sessions:sum_by_version"],
      [/^Job rejections by reason$/, "openrtc:jobs_rejected:rate_by_reason"],
      [/^Dropped calls$/, "openrtc_dropped_sessions_total"],
      [/^Stuck drains$/, "openrtc_drain_stuck"],
    ];
    for (const [title, metric] of required) {
      const panel = panels.find((p) => title.test(p.title));
      expect(panel, `no panel titled ${title}`).toBeDefined();
      expect((panel?.targets ?? []).map((t) => t.expr).join("\n"), String(title)).toContain(metric);
    }
  });

  it("shows the calls of vanished workers with the alert's own expression", () => {
    const squash = (expr: string) => expr.replace(/\s+/g, " ").replace(/\( /g, "(").replace(/ \)/g, ")").trim();
    const block = rulesText.slice(rulesText.indexOf("- alert: OpenRTCWorkerVanishedWithSessions"));
    const alertExpr = /expr: \|\n([\s\S]*?)\n\s+for:/.exec(block)?.[1] ?? "";
    expect(alertExpr).not.toBe("");
    const panel = exprs.find((e) => e.panel === "Calls held by vanished workers");
    expect(squash(panel?.expr ?? "")).toBe(squash(alertExpr));
  });

  it("has PromQL that Prometheus parses", async () => {
    // promtool has no offline expression checker, so each query becomes a recording rule;
    // Grafana's range variables are replaced by a literal duration first.
    const dir = await scratch();
    const file = join(dir, "dashboard.rules.yml");
    const rules = exprs.map(({ expr }, i) =>
      `      - record: dashboard_query_${i}\n        expr: ${JSON.stringify(grafanaToPromQL(expr))}`,
    );
    await writeFile(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join("\n")}\n`);
    const result = await runTool(requireTool("promtool"), ["check", "rules", file]);
    expect(result.stdout + result.stderr).not.toContain("FAILED");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
  });
});
