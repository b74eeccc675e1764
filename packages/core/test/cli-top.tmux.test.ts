// `openrtc top` in a real terminal: the CLI runs as a child process inside tmux (a private tmux
// server), against real pools and control servers in this process. Keys, redraw and exit are
// driven with send-keys and read back with capture-pane.
import { execFile } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditSink } from "../src/audit/delivery.ts";
import { createControlServer, type ControlServer } from "../src/control-server.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool } from "../src/pool.ts";
import { SOURCE_EXEC_ARGV } from "./child.ts";

function requireTmux(): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    try {
      accessSync(join(dir, "tmux"), constants.X_OK);
      return join(dir, "tmux");
    } catch {
      // not here
    }
  }
  throw new Error("tmux is not installed: run `bash scripts/dev.sh setup` (or `apt-get install -y tmux`); this test drives openrtc top in a real terminal");
}

const tmuxBin = requireTmux();
const socket = `openrtc-top-${process.pid}`;
// Unique per run: two suites on one machine share the default tmux server.
const session = `top-${process.pid}`;
const exitFile = join(mkdtempSync(join(tmpdir(), "openrtc-top-")), "exit-code");
const cwd = fileURLToPath(new URL("..", import.meta.url));

function tmux(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(tmuxBin, ["-u", "-L", socket, "-f", "/dev/null", ...args], { encoding: "utf8" }, (error, stdout, stderr) => (error ? reject(new Error(`tmux ${args.join(" ")}: ${stderr || error.message}`)) : resolve(stdout))),
  );
}

const screen = () => tmux("capture-pane", "-p", "-t", session);

/** Polls the terminal until `accept` holds; fails with the last screen. */
async function screenUntil(accept: (text: string) => boolean): Promise<string> {
  const deadline = Date.now() + 20_000;
  let last = "";
  while (Date.now() < deadline) {
    last = await screen();
    if (accept(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`terminal never showed the expected text; last screen:\n${last}`);
}

let now = 2_000_000;
const clock = () => now;
const pools: AgentPool[] = [];
const servers: ControlServer[] = [];
const hung: AuditSink = { name: "slow-sink", write: () => new Promise(() => undefined) };

async function worker(version: string, id: string): Promise<{ pool: AgentPool; server: ControlServer }> {
  const pool = new AgentPool({ deploymentVersion: version, workerId: id, logger: silentLogger, clock, auditSinks: [hung] });
  const server = await createControlServer(pool);
  pool.markReady();
  pools.push(pool);
  servers.push(server);
  return { pool, server };
}

let a: { pool: AgentPool; server: ControlServer };
let b: { pool: AgentPool; server: ControlServer };

describe("openrtc top in tmux", () => {
  beforeAll(async () => {
    a = await worker("v2.0.0", "top-a");
    b = await worker("v1.0.0", "top-b");
    a.pool.startSession({ jobId: "job-old", agentName: "support", roomName: "room-1", metadata: { tenant: "globex" } });
    now += 600;
    a.pool.startSession({ jobId: "job-mid", agentName: "sales", roomName: "room-2", metadata: { tenant: "acme" } });
    now += 242;
    a.pool.startSession({ jobId: "job-new", agentName: "support", roomName: "room-3", metadata: { tenant: "acme" } });
    b.pool.startSession({ jobId: "job-b", agentName: "support", roomName: "room-b", metadata: { tenant: "initech" } });
    // The exit status goes to a file as well: tmux does not always fill in #{pane_dead_status}.
    const command = `cd ${JSON.stringify(cwd)} && ${[process.execPath, ...SOURCE_EXEC_ARGV, "src/cli.ts", "top", a.server.url, b.server.url, "--interval", "0.2"].map((x) => JSON.stringify(x)).join(" ")}; code=$?; echo $code > ${JSON.stringify(exitFile)}; exit $code`;
    await tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", command, ";", "set-option", "-t", session, "remain-on-exit", "on");
  });

  afterAll(async () => {
    await tmux("kill-server").catch(() => undefined);
    for (const s of servers) await s.close().catch(() => undefined);
    for (const p of pools) await p.close({ dropLiveSessions: true, auditFlushTimeoutMs: 50 }).catch(() => undefined);
  });

  it("draws the fleet, the selected worker's sessions by tenant and agent with ages, and the audit backlog", async () => {
    const text = await screenUntil((t) => t.includes("sessions (3, sorted by age)"));
    expect(text).toMatch(/^openrtc top · .* · worker 1\/2$/m);
    expect(text).toMatch(/^top-a\s+v2\.0\.0\s+serving\s+false\s+3\s/m);
    expect(text).toMatch(/^top-b\s+v1\.0\.0\s+serving\s+false\s+1\s/m);
    expect(text).toMatch(/^top-a · v2\.0\.0 · serving · member · up 14m02s · http/m);
    expect(text).toMatch(/^acme\s+2\s+4m02s$/m);
    expect(text).toMatch(/^globex\s+1\s+14m02s$/m);
    expect(text).toMatch(/^support\s+2\s+14m02s$/m);
    // Sorted by age: oldest first.
    const jobs = [...text.matchAll(/^(\S+)\s+(job-\w+)\s/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(jobs).toEqual(["14m02s job-old", "4m02s job-mid", "0s job-new"]);
    expect(text).toMatch(/audit backlog: slow-sink \d+ queued/);
    expect(text).toContain("q quit · s sort (age) · / filter · n/p worker · r refresh");
  });

  it("s sorts by tenant, / filters, Esc clears", async () => {
    await tmux("send-keys", "-t", session, "s");
    let text = await screenUntil((t) => t.includes("sorted by tenant"));
    expect([...text.matchAll(/^\S+\s+(job-\w+)\s+(\w+)/gm)].map((m) => `${m[2]} ${m[1]}`)).toEqual(["acme job-mid", "acme job-new", "globex job-old"]);
    await tmux("send-keys", "-t", session, "/");
    await screenUntil((t) => t.includes("filter: ▏"));
    await tmux("send-keys", "-t", session, "-l", "glob");
    await screenUntil((t) => t.includes("filter: glob▏"));
    await tmux("send-keys", "-t", session, "Enter");
    text = await screenUntil((t) => t.includes('sessions (1 of 3 matching "glob", sorted by tenant)'));
    expect(text).toMatch(/^14m02s\s+job-old\s+globex\s+support\s+room-1$/m);
    expect(text).not.toMatch(/job-mid/);
    await tmux("send-keys", "-t", session, "Escape");
    await screenUntil((t) => t.includes("sessions (3, sorted by tenant)"));
  });

  it("n selects the next worker; a change on the worker is redrawn", async () => {
    await tmux("send-keys", "-t", session, "n");
    let text = await screenUntil((t) => /worker 2\/2/.test(t) && t.includes("top-b · v1.0.0"));
    expect(text).toMatch(/^initech\s+1\s+0s$/m);
    b.pool.beginDrain({ actor: "test" });
    expect(() => b.pool.startSession({ jobId: "late", metadata: { tenant: "acme" } })).toThrow();
    text = await screenUntil((t) => t.includes("top-b · v1.0.0 · draining · draining since 0s ago"));
    expect(text).toMatch(/^live 1 · started 1 · failed 0 · rejected 1$/m);
  });

  it("q quits with exit 0 and gives the terminal back", async () => {
    await tmux("send-keys", "-t", session, "q");
    const deadline = Date.now() + 10_000;
    let state = "";
    while (Date.now() < deadline) {
      state = (await tmux("display-message", "-p", "-t", session, "#{pane_dead}")).trim();
      if (state === "1" && existsSync(exitFile)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(state).toBe("1");
    expect(readFileSync(exitFile, "utf8").trim()).toBe("0");
    // The alternate screen is left: the live view is gone from the terminal.
    expect(await screen()).not.toContain("q quit · s sort");
  });
});
