import { defineConfig, mergeConfig } from "vitest/config";
import { sharedConfig } from "../../vitest.shared.ts";

// The e2e files each run several AgentServer processes; on 2 cores they are faster one at a time.
export default defineConfig(mergeConfig(sharedConfig, { test: { fileParallelism: false } }));
