import { defaultServerConditions } from "vite";
import type { ViteUserConfig } from "vitest/config";

// Tests import workspace packages from source (the "@openrtc/source" export condition), so no
// build step sits between an edit and a test run.
const conditions = ["@openrtc/source", ...defaultServerConditions];

export const sharedConfig: ViteUserConfig = {
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["@openrtc/source"] } },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
};
