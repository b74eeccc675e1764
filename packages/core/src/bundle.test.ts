// Users bundle their workers (esbuild, vite). Optional peers (@openrtc/audit-sinks/s3,
// @openrtc/observer-voicegateway) are loaded with import() at run time and usually absent, so
// the core's entry points must bundle without them: a literal import("...") of one fails the build.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const require = createRequire(import.meta.url);
const esbuild = createRequire(require.resolve("tsx"))("esbuild") as {
  build(options: Record<string, unknown>): Promise<{ errors: unknown[]; outputFiles?: { text: string }[] }>;
};

describe("bundling @openrtc/core", () => {
  for (const entry of ["index.ts", "cli.ts"]) {
    it(`bundles src/${entry} with no optional peer installed`, async () => {
      const result = await esbuild.build({
        entryPoints: [fileURLToPath(new URL(`./${entry}`, import.meta.url))],
        bundle: true,
        write: false,
        platform: "node",
        format: "esm",
        target: "node20",
        conditions: ["@openrtc/source"],
        // Peers the core declares (and the user installs) stay outside the bundle.
        external: ["@opentelemetry/api", "@livekit/agents", "@livekit/rtc-node"],
        logLevel: "silent",
      });
      expect(result.errors).toEqual([]);
      const text = result.outputFiles?.[0]?.text ?? "";
      expect(text.length).toBeGreaterThan(1000);
      if (entry === "cli.ts") expect(text).toContain("@openrtc/audit-sinks/s3");
    });
  }
});
