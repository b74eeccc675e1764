// The chaos run, CI-sized: real runApp workers through a blue-green deploy and a rollback while
// faults land at seeded moments (job processes SIGKILLed, sockets dropped, an audit sink failing,
// a worker reporting full, SIGTERM right after an assignment, two workers draining at once).
// `pnpm chaos` runs the same with 1,000 calls.
import { describe, expect, test } from "vitest";
import { runChaos, type ChaosReport } from "../src/chaos.ts";

describe("pnpm chaos, CI-sized (30 calls, seed 5)", () => {
  let report: ChaosReport;

  test("every call completed or was cut short by a kill the run injected; nothing else was lost", async () => {
    const quiet = { write: () => true } as unknown as NodeJS.WritableStream;
    report = await runChaos({ calls: 30, seed: 5, faultGapMs: [2000, 5000], gapMs: [900, 1500] }, { stdout: quiet, stderr: quiet, env: { ...process.env, LIVEKIT_URL: "", LIVEKIT_API_KEY: "", LIVEKIT_API_SECRET: "" } });
    // On a failure, say why: the report's figures (run_dir holds the audit log and the workers' logs).
    const why = JSON.stringify(report);
    expect(report.demo_error, why).toBeUndefined();
    expect(report.calls_started, why).toBe(30);
    expect(report.calls_cut_otherwise, why).toBe(0);
    expect(report.calls_cut_by_drain, why).toBe(0);
    expect(report.calls_killed_but_completed, why).toBe(0);
    expect(report.calls_unplaced + report.calls_abandoned, why).toBe(0);
    expect(report.calls_completed + report.calls_cut_by_injected_kill, why).toBe(30);
    expect(report.jobs_accepted_after_drain, why).toBe(0);
    expect(report.audit_verified, why).toBe(true);
    expect(report.ok, why).toBe(true);
  }, 600_000);

  test("the faults really happened: each kind at least once", () => {
    expect(report).toBeDefined();
    for (const [fault, n] of Object.entries(report.faults_injected)) expect(n, fault).toBeGreaterThan(0);
    // A killed call is never counted completed: it is cut short, by the kill's observable cause.
    expect(report.calls_cut_short).toBe(report.calls_cut_by_injected_kill);
    for (const cause of Object.keys(report.calls_cut_short_by_cause)) expect(["job_failed", "job_process_killed"]).toContain(cause);
  });
});
