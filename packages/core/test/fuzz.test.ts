// The short variant of `pnpm fuzz` (which throws ≥ 1,000,000 inputs): the same targets, a few
// thousand inputs each, a fixed seed so a failure reproduces.
import { describe, expect, test } from "vitest";
import { fuzzChannelSchema, fuzzChannelSocket, fuzzControlServer, fuzzManifest, fuzzMembership, type FuzzResult } from "./fuzz/targets.ts";

const SEED = 20261201;

function clean(r: FuzzResult, inputs: number): void {
  expect(r.findings).toEqual([]);
  expect({ crashes: r.crashes, forgeries: r.forgeries }).toEqual({ crashes: 0, forgeries: 0 });
  expect(r.inputs).toBe(inputs);
}

describe("fuzz (short variant): 0 crashes, 0 accepted forgeries", () => {
  test("manifest parser and gate", () => clean(fuzzManifest(6000, SEED), 6000));
  test("membership verifier", () => clean(fuzzMembership(4000, SEED), 4000));
  test("session channel schema", () => clean(fuzzChannelSchema(4000, SEED), 4000));
  test("session channel over the real socket", async () => clean(await fuzzChannelSocket(600, SEED), 600));
  test("control server over real HTTP (methods, paths, headers, bodies, slow clients)", async () => clean(await fuzzControlServer(400, SEED), 400));
});
