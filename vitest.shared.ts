import type { ViteUserConfig } from "vitest/config";

// Tests import workspace packages from source (the "@openrtc/source" export condition), so no
// build step sits between an edit and a test run. "module" is left out on purpose: it makes
// some packages (@opentelemetry/api) resolve to bundler-only builds that Node cannot load.
const conditions = ["@openrtc/source", "node", "import", "default"];

export const sharedConfig: ViteUserConfig = {
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["@openrtc/source", "node"] } },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
};
