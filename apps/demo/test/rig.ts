// A test rig: the embedded dispatcher, a fleet of real worker processes (apps/demo/src/worker.ts)
// watching a signed manifest, their audit records collected in memory, and a marker directory
// where the hold-call agent notes each job's process.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditRecord, RuntimeSnapshotJSON } from "@openrtc/core";
import { markerDirPresence, startDispatcher, type Dispatcher, type JobHandle, type JobRecord } from "@openrtc/livekit-dispatcher";
import { Fleet, type WorkerProcess } from "../src/fleet.ts";
import { ManifestFile } from "../src/manifest-file.ts";

export interface Rig {
  dispatcher: Dispatcher;
  fleet: Fleet;
  manifest: ManifestFile;
  records: AuditRecord[];
  markerDir: string;
  /** Records a worker wrote (by its process, whatever its worker id). */
  recordsOf(worker: WorkerProcess): AuditRecord[];
  /** pid of the job process that ran `jobId`, once its entry started. */
  jobPid(jobId: string): number | undefined;
  ended(jobId: string): boolean;
  close(): Promise<void>;
}

export async function startRig(options: { activeVersions?: string[]; seed?: number; selection?: "weighted-by-load" | "least-jobs" } = {}): Promise<Rig> {
  const apiKey = "rig";
  const apiSecret = randomBytes(32).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), "demo-rig-"));
  const markerDir = join(dir, "markers");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(markerDir);
  const secret = randomBytes(32).toString("hex");
  const manifest = new ManifestFile(join(dir, "manifest.json"), secret);
  if (options.activeVersions !== undefined) await manifest.publish(options.activeVersions);
  // LiveKit's server rules; the marker directory stands in for "the agent is in the room".
  const dispatcher = await startDispatcher({ apiKey, apiSecret, profile: "livekit", seed: options.seed ?? 1, ...(options.selection ? { selection: options.selection } : {}), agentPresence: markerDirPresence(markerDir), mintJobTokens: false });
  const records: AuditRecord[] = [];
  const origins = new Map<WorkerProcess, Set<string>>();
  const fleet = new Fleet({
    livekitUrl: dispatcher.url,
    apiKey,
    apiSecret,
    manifestFile: manifest.path,
    membershipSecrets: [secret],
    env: { HOLD_CALL_MARKER_DIR: markerDir },
    stdio: process.env.DEMO_TEST_WORKER_LOGS === "1" ? "inherit" : "ignore",
    onAudit: (batch, worker) => {
      records.push(...batch);
      const set = origins.get(worker) ?? new Set<string>();
      for (const r of batch) set.add(r.origin);
      origins.set(worker, set);
    },
  });
  return {
    dispatcher,
    fleet,
    manifest,
    records,
    markerDir,
    recordsOf: (worker) => records.filter((r) => origins.get(worker)?.has(r.origin)),
    jobPid: (jobId) => {
      const file = join(markerDir, `${jobId}.started`);
      return existsSync(file) ? Number(readFileSync(file, "utf8")) : undefined;
    },
    ended: (jobId) => existsSync(join(markerDir, `${jobId}.ended`)),
    async close() {
      await fleet.close();
      await dispatcher.close();
    },
  };
}

/** Polls `check` every 50 ms until it returns a value other than undefined/false; throws after `timeoutMs`. */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the worker's snapshot satisfies `pred`; returns it. */
export function snapshotUntil(worker: WorkerProcess, what: string, pred: (s: RuntimeSnapshotJSON) => boolean, timeoutMs = 60_000): Promise<RuntimeSnapshotJSON> {
  return until(`${worker.name}: ${what}`, async () => {
    const s = await worker.readSnapshot();
    return s !== undefined && pred(s) ? s : undefined;
  }, timeoutMs);
}

/** A call whose caller hangs up when the test says (`hangUp`); the agent holds until then. */
export const call = (rig: Rig, extra: Record<string, unknown> = {}): JobHandle => rig.dispatcher.dispatch({ metadata: JSON.stringify({ tenant: "acme", ...extra }), caller: true });

/** The caller hangs up once the agent's entry runs; resolves with the caller's verdict. */
export async function hangUpOnceRunning(rig: Rig, handle: JobHandle): Promise<JobRecord> {
  await until(`${handle.id}'s entry to start`, () => rig.jobPid(handle.id));
  rig.dispatcher.hangUp(handle.id);
  return handle.ended;
}
