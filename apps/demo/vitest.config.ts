import { defineConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.ts";

// The end-to-end tests start real AgentServer processes (seconds of CPU each) and share two
// cores: files run one after another so they never compete for the machine.
export default defineConfig({
  ...sharedConfig,
  test: {
    ...sharedConfig.test,
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 240_000,
  },
});
