// `openrtc top`'s view logic (keys, sort, filter) and its --once --json additions, on a real pool.
import { afterEach, describe, expect, it } from "vitest";
import { main } from "../src/cli.ts";
import { handleKey, viewSessions, type ViewState } from "../src/cli-top.ts";
import { createControlServer, type ControlServer } from "../src/control-server.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool } from "../src/pool.ts";
import type { LiveSessionView } from "../src/sessions.ts";

const servers: ControlServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const s = (job: string, tenant: string, agent: string, age: number): LiveSessionView => ({ job_id: job, tenant, agent_name: agent, room_name: `room-${job}`, started_at: 0, age_seconds: age });

describe("openrtc top view", () => {
  it("sorts by age (oldest first), tenant, agent, room; filters on any field", () => {
    const sessions = [s("a", "globex", "sales", 5), s("b", "acme", "support", 50), s("c", "acme", "sales", 500)];
    expect(viewSessions(sessions, { sort: "age", filter: "" }).map((x) => x.job_id)).toEqual(["c", "b", "a"]);
    expect(viewSessions(sessions, { sort: "tenant", filter: "" }).map((x) => x.job_id)).toEqual(["c", "b", "a"]);
    expect(viewSessions(sessions, { sort: "agent", filter: "" }).map((x) => x.job_id)).toEqual(["c", "a", "b"]);
    expect(viewSessions(sessions, { sort: "age", filter: "SALES" }).map((x) => x.job_id)).toEqual(["c", "a"]);
  });

  it("keys: s cycles the sort, / edits the filter, Esc clears, n/p wrap, q quits", () => {
    const view: ViewState = { sort: "age", filter: "", selected: 0, editing: null };
    handleKey(view, "s", 2);
    expect(view.sort).toBe("tenant");
    for (const k of ["/", "a", "c", "x", "\x7f", "\r"]) handleKey(view, k, 2);
    expect(view).toMatchObject({ filter: "ac", editing: null });
    handleKey(view, "\x1b", 2);
    expect(view.filter).toBe("");
    handleKey(view, "p", 2);
    expect(view.selected).toBe(1);
    handleKey(view, "n", 2);
    expect(view.selected).toBe(0);
    expect(handleKey(view, "r", 2)).toBe("refresh");
    expect(handleKey(view, "q", 2)).toBe("quit");
    expect(handleKey(view, "\x03", 2)).toBe("quit");
  });

  it("--once --json adds each worker's sessions with ages and its audit backlog; --once prints the detail", async () => {
    let now = 5000;
    const pool = new AgentPool({ deploymentVersion: "v2.0.0", workerId: "w", logger: silentLogger, clock: () => now, auditSinks: [{ name: "hung", write: () => new Promise(() => undefined) }] });
    pool.startSession({ jobId: "j1", agentName: "support", metadata: { tenant: "acme" } });
    now += 90;
    pool.markReady();
    pool.beginDrain({ actor: "t" });
    const server = await createControlServer(pool);
    servers.push(server);
    const out = { stdout: "", stderr: "" };
    const io = { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env: {} };
    expect(await main(["top", server.url, "--once", "--json"], io)).toBe(0);
    const [row] = JSON.parse(out.stdout);
    expect(row).toMatchObject({ worker_id: "w", draining: true, sessions: [{ job_id: "j1", tenant: "acme", age_seconds: 90 }], audit_backlog: { queued: { hung: expect.any(Number) } } });
    expect(row.audit_backlog.queued.hung).toBeGreaterThan(0);
    out.stdout = "";
    expect(await main(["top", server.url, "--once"], io)).toBe(0);
    expect(out.stdout).toContain("w · v2.0.0 · draining · draining since 0s ago · member");
    expect(out.stdout).toMatch(/^1m30s\s+j1\s+acme\s+support/m);
    expect(out.stdout).toMatch(/audit backlog: hung \d+ queued/);
    await pool.close({ dropLiveSessions: true, auditFlushTimeoutMs: 20 });
  });
});
