// A leftover worker whose version left the signed manifest stops taking jobs while a member keeps
// taking them: real worker processes, a real manifest file, the embedded dispatcher.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { WorkerProcess } from "../src/fleet.ts";
import { call, hangUpOnceRunning, snapshotUntil, startRig, until, type Rig } from "./rig.ts";

let rig: Rig;
let leftover: WorkerProcess;
let member: WorkerProcess;

beforeAll(async () => {
  // Least-jobs order (not LiveKit's weighted random) so the third test can make the leftover the
  // first worker offered a job: the rule under test is the worker's refusal, not the selection.
  rig = await startRig({ activeVersions: ["v1.0.0", "v2.0.0"], selection: "least-jobs" });
  leftover = rig.fleet.spawn({ name: "leftover-v1", version: "v1.0.0" });
  member = rig.fleet.spawn({ name: "member-v2", version: "v2.0.0" });
  await Promise.all([leftover.ready, member.ready]);
  await Promise.all([snapshotUntil(leftover, "serving", (s) => s.state === "serving"), snapshotUntil(member, "serving", (s) => s.state === "serving")]);
});

afterAll(async () => {
  await rig?.close();
});

describe("signed membership: manifest {v1,v2} → {v2}", () => {
  test("the leftover reports member:false and /readyz 503; the member stays ready", async () => {
    await rig.manifest.publish(["v2.0.0"]);
    const snap = await snapshotUntil(leftover, "member:false", (s) => s.member === false);
    expect(snap).toMatchObject({ deployment_version: "v1.0.0", member: false, draining: false, state: "serving" });
    expect((await member.readSnapshot())?.member).toBe(true);
    const ready = await leftover.get("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ status: "not ready", reason: "not a member of the active manifest" });
    expect((await member.get("/readyz")).status).toBe(200);
    expect(rig.recordsOf(leftover).some((r) => r.event === "worker.membership_changed" && r.member === false)).toBe(true);
  });

  test("new jobs all land on the member", async () => {
    const handles = [0, 1, 2].map(() => call(rig));
    const ended = await Promise.all(handles.map((h) => hangUpOnceRunning(rig, h)));
    for (const job of ended) {
      expect(job.fate).toBe("completed");
      expect(job.workerId).toBe(member.info!.workerId);
      expect(job.offers.every((o) => o.workerId === member.info!.workerId || o.answer !== "accepted")).toBe(true);
    }
    expect((await leftover.readSnapshot())?.total_sessions_started).toBe(0);
  });

  test("an offer that still reaches the leftover (here: right after it re-registers) is refused for membership and goes to the member", async () => {
    // The member holds a call, so the dispatcher's least-jobs placement offers the next job to
    // the leftover first while LiveKit still sees it as available (a fresh registration).
    const busy = call(rig);
    expect((await busy.placed).workerId).toBe(member.info!.workerId);
    const oldId = leftover.info!.workerId;
    // As on LiveKit's server, the re-registration is a new worker (new id) that starts available.
    const reconnected = new Promise<string>((resolve) => {
      const on = (w: { id: string; reconnectOf?: string }) => {
        if (w.reconnectOf !== oldId) return;
        rig.dispatcher.events.off("worker_registered", on);
        resolve(w.id);
      };
      rig.dispatcher.events.on("worker_registered", on);
    });
    rig.dispatcher.dropConnection(oldId);
    const leftoverId = await reconnected;
    const next = call(rig);
    const job = await hangUpOnceRunning(rig, next);
    expect(job.offers.map((o) => [o.workerId, o.answer])).toEqual([
      [leftoverId, "unavailable"],
      [member.info!.workerId, "accepted"],
    ]);
    expect(job.fate).toBe("completed");
    const rejected = await until("the leftover's worker.rejected record", () => rig.recordsOf(leftover).find((r) => r.event === "worker.rejected" && r.job_id === job.id));
    expect(rejected).toMatchObject({ reason: "membership", result: "rejected" });
    const snap = await leftover.readSnapshot();
    expect(snap).toMatchObject({ member: false, total_sessions_started: 0 });
    expect(snap!.rejected_jobs).toBeGreaterThanOrEqual(1);
    expect((await hangUpOnceRunning(rig, busy)).fate).toBe("completed");
  });

  test("both still drain and exit 0 on SIGTERM", async () => {
    leftover.signal("SIGTERM");
    member.signal("SIGTERM");
    expect((await leftover.exited).code).toBe(0);
    expect((await member.exited).code).toBe(0);
  });
});
