import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runCompare } from "./cli.ts";
import { createCollectorServer, type CollectorServer } from "./collector.ts";
import { seededRandom } from "./reservoir.ts";
import { InMemoryStore } from "./store.ts";
import { syntheticCalls } from "./testing/synthetic.ts";

let collector: CollectorServer | undefined;
afterEach(async () => {
  await collector?.close();
  collector = undefined;
});

async function run(argv: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const code = await runCompare(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env });
  return { code, out, err };
}

function seeded(shift: { ttfbShift?: number; failureRate?: number }, n = 100): InMemoryStore {
  const random = seededRandom(5);
  const store = new InMemoryStore({ random });
  for (const c of [...syntheticCalls({ version: "v1.0.0" }, n, random), ...syntheticCalls({ version: "v2.0.0", ...shift }, n, random)]) store.record(c);
  return store;
}

describe("openrtc compare", () => {
  it("exit 1 and a table for a regression read from a collector", async () => {
    collector = await createCollectorServer({ store: seeded({ ttfbShift: 1.6 }), apiKey: "tok" });
    const r = await run(["--base", "v1.0.0", "--candidate", "v2.0.0", "--collector", collector.url, "--token", "tok"]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/verdict: roll_back/);
    expect(r.out).toMatch(/tts_ttfb_ms/);
  });

  it("--json prints the whole result; exit 0 on promote; the collector URL can come from the environment", async () => {
    collector = await createCollectorServer({ store: seeded({}) });
    const r = await run(["--base=v1.0.0", "--candidate=v2.0.0", "--json"], { OPENRTC_OBSERVER_COLLECTOR_URL: collector.url });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ verdict: "promote", base: "v1.0.0", candidate: "v2.0.0", exitCode: 0 });
  });

  it("reads exported buckets and JSON-lines call records; exit 3 on escalate, 4 on insufficient data", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ovg-cli-"));
    const random = seededRandom(9);
    const exportFile = join(dir, "buckets.json");
    const base = new InMemoryStore({ random });
    for (const c of syntheticCalls({ version: "v1.0.0" }, 200, random)) base.record(c);
    writeFileSync(exportFile, JSON.stringify(base.toExport()));
    const jsonl = join(dir, "calls.jsonl");
    writeFileSync(jsonl, syntheticCalls({ version: "v2.0.0", costShift: 1.6 }, 200, random).map((c) => JSON.stringify(c)).join("\n"));
    expect((await run(["--base", "v1.0.0", "--candidate", "v2.0.0", "--records", exportFile, "--records", jsonl])).code).toBe(3);
    expect((await run(["--base", "v1.0.0", "--candidate", "v3", "--records", exportFile])).code).toBe(4);
    const bad = join(dir, "bad.jsonl");
    writeFileSync(bad, '{"v":1}\n');
    const r = await run(["--base", "a", "--candidate", "b", "--records", bad]);
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/bad.jsonl:1: not a call record/);
    expect((await run(["--base", "a", "--candidate", "b", "--records", join(dir, "missing")])).err).toMatch(/ENOENT/);
    writeFileSync(join(dir, "empty"), "");
    expect((await run(["--base", "a", "--candidate", "b", "--records", join(dir, "empty")])).err).toMatch(/is empty/);
    writeFileSync(join(dir, "garbage"), "{{");
    expect((await run(["--base", "a", "--candidate", "b", "--records", join(dir, "garbage")])).err).toMatch(/not JSON/);
  });

  it("exit 2 on usage errors", async () => {
    for (const argv of [[], ["--base", "a"], ["--base", "a", "--candidate", "b"], ["--base", "a", "--candidate", "b", "--records"], ["--bogus"], ["--base", "a", "--candidate", "b", "--records", "x", "--confidence", "high"], ["--base", "a", "--candidate", "a", "--records", "/dev/null"], ["--help"], ["--base", "a", "--candidate", "b", "--records", "x", "--correction", "holm"]]) {
      const r = await run(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.err).toMatch(/usage: openrtc compare/);
    }
  });

  it("exit 4 when the collector cannot be read", async () => {
    collector = await createCollectorServer({ apiKey: "secret" });
    const r = await run(["--base", "a", "--candidate", "b", "--collector", collector.url]);
    expect(r.code).toBe(4);
    expect(r.err).toMatch(/HTTP 401/);
    const down = await run(["--base", "a", "--candidate", "b", "--collector", "http://127.0.0.1:9"]);
    expect(down.code).toBe(4);
  });
});
