/**
 * `pnpm fuzz` (in packages/core): throws at least 1,000,000 inputs at the control server, the
 * session channel, the manifest parser and the membership verifier, then prints the counts.
 * Exit 0 only with 0 crashes and 0 accepted forgeries.
 *
 *   FUZZ_SEED=<n>    reproduce a run (default: random, printed)
 *   FUZZ_SCALE=<x>   multiply every target's input count (default 1)
 *   FUZZ_JSON=<file> also write the summary as JSON
 */
import { writeFileSync } from "node:fs";
import { fuzzChannelSchema, fuzzChannelSocket, fuzzControlServer, fuzzManifest, fuzzMembership, type FuzzResult } from "./targets.ts";
import { checkPoolSequence, poolOpsArb } from "./pool-property.ts";
import fc from "fast-check";

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const scale = Number(process.env.FUZZ_SCALE ?? 1);
const n = (base: number) => Math.max(1, Math.round(base * scale));

// Anything escaping to the process is a crash of the part under test.
let processCrashes = 0;
const escaped: string[] = [];
process.on("uncaughtException", (error) => {
  processCrashes++;
  if (escaped.length < 5) escaped.push(`uncaught: ${String(error)}`);
});
process.on("unhandledRejection", (error) => {
  processCrashes++;
  if (escaped.length < 5) escaped.push(`unhandled rejection: ${String(error)}`);
});

// Keeps the event loop alive, so a target waiting on something that never comes shows as a hang
// (and is reported by the watchdog below) rather than as a quiet early exit.
const keepAlive = setInterval(() => {}, 1000);
const TARGET_TIMEOUT_MS = Number(process.env.FUZZ_TARGET_TIMEOUT_MS ?? 15 * 60_000);

const results: (FuzzResult & { seconds: number })[] = [];
async function run(fn: () => FuzzResult | Promise<FuzzResult>): Promise<void> {
  const started = performance.now();
  let watchdog: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    Promise.resolve().then(fn),
    new Promise<never>((_, reject) => {
      watchdog = setTimeout(() => reject(new Error(`target did not finish within ${TARGET_TIMEOUT_MS} ms`)), TARGET_TIMEOUT_MS);
    }),
  ]).catch((error: unknown): FuzzResult => ({ target: "(target)", inputs: 0, crashes: 1, forgeries: 0, findings: [`crash: ${String(error)}`] }));
  clearTimeout(watchdog);
  results.push({ ...r, seconds: (performance.now() - started) / 1000 });
  process.stdout.write(`${r.target.padEnd(28)} ${String(r.inputs).padStart(9)} inputs  ${r.crashes} crashes  ${r.forgeries} forgeries  ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  for (const f of r.findings) process.stdout.write(`    ${f}\n`);
}

process.stdout.write(`fuzz seed ${seed}, scale ${scale}\n`);
await run(() => fuzzManifest(n(450_000), seed));
await run(() => fuzzMembership(n(300_000), seed + 1));
await run(() => fuzzChannelSchema(n(150_000), seed + 2));
await run(() => fuzzChannelSocket(n(50_000), seed + 3));
await run(() => fuzzControlServer(n(60_000), seed + 4));
// The pool's property test at fuzz size: random start/end/drain/close/listener-throw sequences.
const propertyRuns = n(3_000);
const propertyStarted = performance.now();
let propertyFailure: string | undefined;
try {
  await fc.assert(fc.asyncProperty(poolOpsArb, (ops) => checkPoolSequence(ops)), { numRuns: propertyRuns, seed });
} catch (error) {
  propertyFailure = String(error).slice(0, 2000);
}
process.stdout.write(`${"pool property (fast-check)".padEnd(28)} ${String(propertyRuns).padStart(9)} runs    ${propertyFailure === undefined ? "invariants held" : "FAILED"}  ${((performance.now() - propertyStarted) / 1000).toFixed(1)} s\n`);
if (propertyFailure !== undefined) process.stdout.write(`${propertyFailure}\n`);

await new Promise((resolve) => setTimeout(resolve, 50));
clearInterval(keepAlive);
const inputs = results.reduce((sum, r) => sum + r.inputs, 0);
const crashes = results.reduce((sum, r) => sum + r.crashes, 0) + processCrashes;
const forgeries = results.reduce((sum, r) => sum + r.forgeries, 0);
for (const e of escaped) process.stdout.write(`    ${e}\n`);
process.stdout.write(`total ${inputs} inputs, ${crashes} crashes, ${forgeries} accepted forgeries; pool property ${propertyRuns} runs ${propertyFailure === undefined ? "passed" : "failed"}\n`);
if (process.env.FUZZ_JSON) {
  writeFileSync(process.env.FUZZ_JSON, `${JSON.stringify({ seed, scale, inputs, crashes, forgeries, processCrashes, propertyRuns, propertyPassed: propertyFailure === undefined, targets: results }, null, 2)}\n`);
}
process.exit(crashes === 0 && forgeries === 0 && propertyFailure === undefined ? 0 : 1);
