// Characterizes @livekit/agents 1.9 itself, seen through the dispatcher: AgentServer.drain()
// closes every job process that has no running job yet — including the one it is still
// starting for a job it already accepted. The process is still loading the agent module and
// has no IPC handler yet, so the shutdownRequest is lost; after shutdownProcessTimeout the
// worker SIGKILLs it — whether or not the call has started meanwhile — and drain() resolves
// with the call cut off (or never run: "error launching job"). The worker stays connected, so
// the dispatcher reports the call dropped when the worker closes.
// If this test fails, the SDK changed: update LIVEKIT-NOTES.md and the core binding.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startDispatcher } from "../src/dispatcher.ts";
import { spawnWorker, type SpawnedWorker } from "../src/spawn-worker.ts";
import type { Dispatcher } from "../src/types.ts";

const apiKey = "race-key";
const apiSecret = "race-secret-race-secret-race-secret";
const markers = mkdtempSync(join(tmpdir(), "lkd-race-"));
const childrenFile = (pid: number) => `/proc/${pid}/task/${pid}/children`;
const children = (pid: number): number[] =>
  readFileSync(childrenFile(pid), "utf8").split(/\s+/).filter(Boolean).map(Number);

let d: Dispatcher | undefined;
let w: SpawnedWorker | undefined;
afterAll(async () => {
  w?.kill("SIGKILL", { group: true });
  await w?.exited;
  await d?.close();
  rmSync(markers, { recursive: true, force: true });
});

describe.skipIf(!existsSync(childrenFile(process.pid)))("@livekit/agents 1.9 drain()", () => {
  it("kills an accepted call whose job process was starting when drain began; the dispatcher records it dropped", async () => {
    d = await startDispatcher({ apiKey, apiSecret, profile: "legacy" });
    w = spawnWorker({
      env: { LIVEKIT_URL: d.url, LIVEKIT_API_KEY: apiKey, LIVEKIT_API_SECRET: apiSecret, LIVEKIT_AGENT_DEPLOYMENT: "racer", HOLD_CALL_MARKER_DIR: markers },
    });
    await w.registered;
    const before = new Set(children(w.pid)); // the inference process
    const h = d.dispatch({ metadata: JSON.stringify({ duration_ms: 60_000 }) });
    await h.placed;
    // Wait for the job process to be forked: it then spends seconds loading the agent module.
    const deadline = Date.now() + 20_000;
    while (!children(w.pid).some((pid) => !before.has(pid))) {
      if (Date.now() > deadline) throw new Error("job process never forked");
      await new Promise((r) => setTimeout(r, 20));
    }
    w.send({ type: "drain", timeoutMs: 60_000 });
    // Resolves after shutdownProcessTimeout (5 s in the launcher), long before the 60 s call ends.
    await w.nextMessage("drained");
    expect(d.job(h.id)?.state).toBe("running"); // as far as anyone outside the worker can tell
    w.send({ type: "close" });
    await w.nextMessage("closed");
    expect(await h.ended).toMatchObject({ fate: "dropped", endReason: "worker_closed", workerDeployment: "racer" });
    // The job's shutdown callbacks never ran: the process was killed, not shut down.
    expect(existsSync(join(markers, `${h.id}.ended`))).toBe(false);
  });
});
