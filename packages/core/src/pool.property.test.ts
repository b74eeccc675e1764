import { describe, test } from "vitest";
import fc from "fast-check";
import { checkPoolSequence, poolOpsArb } from "../test/fuzz/pool-property.ts";

/** How many random sequences the property runs here; `pnpm fuzz` runs 3,000. */
const PROPERTY_RUNS = Number(process.env.POOL_PROPERTY_RUNS ?? 300);

describe("AgentPool property: random start/end/drain/close/listener-throws sequences", () => {
  test("active = started − ended; drained resolves iff drained or closed (drained ⇒ none live, draining ⇒ some); exactly one drain_started; listeners never reach the caller", async () => {
    await fc.assert(fc.asyncProperty(poolOpsArb, (ops) => checkPoolSequence(ops)), { numRuns: PROPERTY_RUNS });
  });
});
