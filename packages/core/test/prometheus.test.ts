// The harness's own failure paths: a broken setup must fail loudly, never hang or pass.
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, requireTool, runTool, startPrometheus, ToolMissingError, type PrometheusServer } from "./prometheus.ts";

describe("requireTool", () => {
  it("names the setup command when the tool is missing", () => {
    let error: unknown;
    try {
      requireTool("prometheus", "/nonexistent-openrtc-a:/nonexistent-openrtc-b");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ToolMissingError);
    expect((error as Error).message).toMatch(/^prometheus is not installed.*`pnpm setup` \(or `bash scripts\/dev\.sh setup`\)/);
  });
});

describe("runTool", () => {
  it("reports a non-zero exit with the tool's output instead of throwing", async () => {
    const result = await runTool(requireTool("promtool"), ["check", "rules", "/nonexistent-openrtc.rules.yml"]);
    expect(result.code).toBe(1);
    expect(result.stdout + result.stderr).toContain("/nonexistent-openrtc.rules.yml");
  });

  it("feeds input on stdin", async () => {
    const bad = await runTool(requireTool("promtool"), ["check", "metrics"], { input: "# TYPE x counter\nx 1\n" });
    // promtool exits 3 for lint problems.
    expect(bad.code).toBe(3);
    expect(bad.stdout + bad.stderr).toContain('counter metrics should have "_total" suffix');
  });

  it("rejects when the binary cannot be spawned", async () => {
    await expect(runTool("/nonexistent-openrtc-binary", [])).rejects.toThrow(/ENOENT/);
  });
});

describe("freePort", () => {
  it("returns a bindable loopback port", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
  });
});

describe("startPrometheus", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it("fails with Prometheus's own output when it cannot start", async () => {
    const dir = await mkdtemp(join(tmpdir(), "openrtc-prometheus-test-"));
    dirs.push(dir);
    const broken = join(dir, "broken.rules.yml");
    await writeFile(broken, "groups:\n  - name: broken\n    rules:\n      - record: x\n        expr: sum(\n");
    await expect(startPrometheus({ targets: [], ruleFiles: [broken] })).rejects.toThrow(
      /prometheus exited during startup; its output:[\s\S]*broken\.rules\.yml/,
    );
  });

  describe("a running server", () => {
    let server: PrometheusServer | undefined;
    beforeAll(async () => {
      server = await startPrometheus({ targets: [] });
    });
    afterAll(async () => {
      await server?.stop();
    });
    const running = (): PrometheusServer => {
      if (server === undefined) throw new Error("prometheus did not start");
      return server;
    };

    it("answers instant queries", async () => {
      expect(await running().query("vector(3)")).toEqual([{ metric: {}, value: 3 }]);
    });

    it("turns an API error into an exception naming it", async () => {
      await expect(running().query("sum(")).rejects.toThrow(/Prometheus API .* failed: bad_data/);
    });

    it("gives up waiting with the last result instead of hanging", async () => {
      await expect(running().waitFor("vector(1)", () => false, { timeoutMs: 300, intervalMs: 50 })).rejects.toThrow(
        /timed out waiting on vector\(1\); last result \[\{"metric":\{\},"value":1\}\]/,
      );
    });

    it("stops idempotently and removes its storage", async () => {
      const { dir } = running();
      await Promise.all([running().stop(), running().stop()]);
      await expect(running().query("vector(1)")).rejects.toThrow();
      await expect(access(dir)).rejects.toThrow(/ENOENT/);
    });
  });
});
