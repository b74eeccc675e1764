// The shipped unit under the real systemd 252: booted as PID 1 of a private pid+mount+cgroup
// namespace, on an overlay of / with a tmpfs upper layer (test/systemd/boot.sh), driven with
// systemctl through nsenter. The worker holds a call longer than TimeoutStopSec=2; `systemctl
// stop` must wait for its hang-up, end in Result=success without a SIGKILL, and show "draining".
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmdirSync, statfsSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SOURCE_EXEC_ARGV, WORKER } from "./harness.ts";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const packageDir = path.resolve(here, "..");
const BOOT = path.join(here, "systemd", "boot.sh");
const UNIT_FILE = path.resolve(packageDir, "../../deploy/systemd/openrtc-worker.service");
const UNIT = "openrtc-worker.service";
const TIMEOUT_STOP_SEC = 2;
const HOLD_AFTER_STOP_MS = 5000;
const CGROUP2_MAGIC = 0x63677270;

function onPath(binary: string): boolean {
  return (process.env.PATH ?? "").split(":").some((dir) => existsSync(path.join(dir, binary)));
}

/** The cgroup2 directory this process is in (hybrid hosts mount it at /sys/fs/cgroup/unified). */
function ownCgroup2(): string | undefined {
  let base: string | undefined;
  for (const candidate of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]) {
    try {
      if (statfsSync(candidate).type === CGROUP2_MAGIC) {
        base = candidate;
        break;
      }
    } catch {
      // Not mounted here.
    }
  }
  if (base === undefined) return undefined;
  const line = readFileSync("/proc/self/cgroup", "utf8").split("\n").find((l) => l.startsWith("0::"));
  return line === undefined ? undefined : path.join(base, line.slice(3));
}

function skipReason(): string | undefined {
  if (process.platform !== "linux") return "systemd runs on Linux only";
  if (process.getuid?.() !== 0) return "booting systemd in a private pid+mount namespace needs root (unshare, mount, chroot)";
  if (!existsSync("/lib/systemd/systemd")) return "systemd is not installed (/lib/systemd/systemd)";
  for (const binary of ["unshare", "nsenter", "chroot"]) if (!onPath(binary)) return `${binary} is not on PATH (util-linux / coreutils)`;
  if (!existsSync("/srv")) return "/srv (the namespace's scratch mount point) is missing";
  if (ownCgroup2() === undefined) return "no cgroup2 hierarchy to give systemd a cgroup of its own";
  return undefined;
}

const reason = skipReason();

interface Booted {
  wrapper: ChildProcess;
  unsharePid: number;
  systemdPid: number;
  cgroup: string;
}
let booted: Booted | undefined;

/** SIGKILLs systemd (PID 1 ignores SIGTERM) and the processes around it. Synchronous: also runs on exit. */
function killAll(): void {
  if (booted === undefined) return;
  for (const pid of [booted.systemdPid, booted.unsharePid, booted.wrapper.pid]) {
    if (pid === undefined || pid <= 0) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}
const killOnExit = (): void => killAll();

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) removeCgroup(path.join(dir, entry.name));
  rmdirSync(dir);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

function workerLog(): string {
  try {
    return readFileSync(`/proc/${booted!.systemdPid}/root/run/openrtc-worker.log`, "utf8").slice(-3000);
  } catch (error) {
    return `(unreadable: ${(error as Error).message})`;
  }
}

async function systemctl(...args: string[]): Promise<string> {
  const { stdout } = await run("nsenter", ["-t", String(booted!.systemdPid), "-m", "-p", "-r", "-w", "systemctl", ...args], { encoding: "utf8" });
  return stdout;
}

async function show(...properties: string[]): Promise<Record<string, string>> {
  const out = await systemctl("show", UNIT, "-p", properties.join(","));
  const result: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) result[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return result;
}

/** A line connection to the worker's control port (stdin is /dev/null under systemd). */
class Control {
  private readonly lines: string[] = [];
  private readonly waiters: (() => void)[] = [];
  private constructor(private readonly socket: Socket) {
    createInterface({ input: socket }).on("line", (line) => {
      this.lines.push(line);
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(port: number): Promise<Control> {
    const socket = await until("the worker's control port", 20_000, () =>
      new Promise<Socket | undefined>((resolve) => {
        const s = connect(port, "127.0.0.1");
        s.once("connect", () => resolve(s));
        // Kept for the socket's life: a worker that dies mid-test resets it, and the waiting
        // command then says what the worker logged instead of crashing the run.
        s.on("error", () => resolve(undefined));
      }),
    );
    return new Control(socket);
  }
  async command(line: string, reply: string): Promise<string> {
    const from = this.lines.length;
    this.socket.write(`${line}\n`);
    return until(`reply ${reply} to ${line}`, 10_000, async () => this.lines.slice(from).find((l) => l.startsWith(reply))).catch((error: Error) => {
      throw new Error(`${error.message}\nworker log: ${workerLog()}`);
    });
  }
  close(): void {
    this.socket.destroy();
  }
}

describe.skipIf(reason !== undefined)(`the shipped unit under the real systemd 252${reason === undefined ? "" : ` (skipped: ${reason})`}`, () => {
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    const cgroup = path.join(ownCgroup2()!, `openrtc-e2e-${process.pid}`);
    execFileSync("mkdir", ["-p", cgroup]);
    const dropIn = [
      "[Unit]",
      // Only this unit: no sysinit.target (its tmpfiles, sysctl and udev units act on the kernel).
      "DefaultDependencies=no",
      "[Service]",
      "ExecStart=",
      `ExecStart=${process.execPath} ${SOURCE_EXEC_ARGV.join(" ")} ${WORKER}`,
      `WorkingDirectory=${packageDir}`,
      // The shipped unit's PrivateTmp=/ProtectHome= would hide a checkout under /tmp or /root
      // (where CI may clone): bind it in read-only, as a unit running from such a path would.
      `BindReadOnlyPaths=${path.resolve(packageDir, "../..")}`,
      "User=root",
      "Group=root",
      `TimeoutStopSec=${TIMEOUT_STOP_SEC}s`,
      "WatchdogSec=2s",
      `Environment=CONTROL_PORT=${port} EXTEND_BY_MS=1500 VERSION=v1.0.0`,
      // Inside the namespace's /run (a tmpfs): read through /proc/<systemd>/root when a step fails.
      "StandardOutput=file:/run/openrtc-worker.log",
      "StandardError=inherit",
      "",
    ].join("\n");
    const units = {
      "openrtc-e2e.target": "[Unit]\nDescription=OpenRTC end-to-end test\n",
      // The shipped file, byte for byte; the test's changes are all in the drop-in.
      [UNIT]: readFileSync(UNIT_FILE, "utf8"),
      [`${UNIT}.d/e2e.conf`]: dropIn,
      // Nothing brings the network online in here; masked, the unit's Wants= on it is a no-op.
      "network-online.target": "@mask",
    };
    // The wrapper stays outside the namespace, in the host's cgroup; the inner shell moves itself
    // into the test's cgroup before unshare, so that cgroup is the new namespace's root. When this
    // process dies for any reason its pipe to the wrapper closes and the wrapper SIGKILLs systemd.
    const script = [
      'bash -c \'echo $$ > "$2/cgroup.procs" && exec unshare --cgroup --fork --pid --mount --mount-proc --propagation private bash "$1"\' inner "$0" "$1" &',
      "u=$!",
      'echo "UNSHARE $u"',
      "while read -r _; do :; done",
      'kill -KILL $(cat /proc/$u/task/$u/children 2>/dev/null) $u 2>/dev/null',
    ].join("\n");
    const wrapper = spawn("bash", ["-c", script, BOOT, cgroup], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, OPENRTC_E2E_UNITS: JSON.stringify(units), OPENRTC_E2E_CHECKOUT: path.resolve(packageDir, "../..") },
    });
    process.on("exit", killOnExit);
    let output = "";
    wrapper.stdout!.on("data", (d) => (output += d.toString()));
    wrapper.stderr!.on("data", (d) => (output += d.toString()));
    const unsharePid = await until("unshare to start", 10_000, async () => {
      const m = /UNSHARE (\d+)/.exec(output);
      return m === null ? undefined : Number(m[1]);
    });
    booted = { wrapper, unsharePid, systemdPid: 0, cgroup };
    booted.systemdPid = await until(`systemd to boot (output: ${output})`, 10_000, async () => {
      const children = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, "utf8").trim();
      if (children === "") return undefined;
      const pid = Number(children.split(" ")[0]);
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").startsWith("/lib/systemd/systemd") ? pid : undefined;
    });
    await until("systemctl is-system-running", 15_000, async () => ((await systemctl("is-system-running").catch((e: { stdout?: string }) => e.stdout ?? "")).trim() === "running" ? true : undefined));
  }, 60_000);

  afterAll(async () => {
    if (booted === undefined) return;
    killAll();
    booted.wrapper.stdin?.end();
    await until("systemd to die", 10_000, async () => (alive(booted!.systemdPid) ? undefined : true));
    // Its processes are gone with it; the empty cgroups it made are the test's to remove.
    await until("the test's cgroup to be removed", 10_000, async () => {
      removeCgroup(booted!.cgroup);
      return true;
    });
    process.off("exit", killOnExit);
    booted = undefined;
  }, 30_000);

  it(`systemctl stop waits for the call's hang-up past TimeoutStopSec=${TIMEOUT_STOP_SEC}, reads "draining", ends Result=success without SIGKILL`, async () => {
    await systemctl("start", "--no-block", UNIT);
    const control = await Control.open(port).catch(async (error: Error) => {
      throw new Error(`${error.message}\nunit: ${JSON.stringify(await show("ActiveState", "SubState", "Result", "ExecMainStatus").catch(() => ({})))}\nworker log: ${workerLog()}`);
    });
    try {
      // Type=notify: not active before READY=1.
      expect((await show("ActiveState")).ActiveState).toBe("activating");
      await control.command("start call-1", "STARTED call-1");
      const readyAt = Date.now();
      await control.command("ready", "OK ready");
      const active = await until("active", 10_000, async () => {
        const s = await show("ActiveState", "StatusText", "MainPID");
        return s.ActiveState === "active" ? s : undefined;
      });
      const readyMs = Date.now() - readyAt;
      expect(active.StatusText).toBe("v1.0.0 serving, 1 live call");

      // The watchdog pings reach the real systemd from the main process (NotifyAccess=main).
      const first = Number((await show("WatchdogTimestampMonotonic")).WatchdogTimestampMonotonic);
      const later = await until("a newer watchdog ping", 5000, async () => {
        const t = Number((await show("WatchdogTimestampMonotonic")).WatchdogTimestampMonotonic);
        return t > first && first > 0 ? t : undefined;
      });
      expect(later).toBeGreaterThan(first);

      // Reload: ExecReload's SIGHUP → RELOADING=1 … READY=1; the unit is active again.
      await systemctl("reload", UNIT);
      await until("the reload hook to run", 5000, async () => ((await control.command("reloads", "RELOADS")) === "RELOADS 1" ? true : undefined));
      await until("active after the reload", 5000, async () => ((await show("ActiveState")).ActiveState === "active" ? true : undefined));

      // The stop: SIGTERM → STOPPING=1 + extensions; the call hangs up 5 s later.
      const timeline: { ms: number; state: string }[] = [];
      const held: { ms: number; active: string; status: string }[] = [];
      const t0 = Date.now();
      await systemctl("stop", "--no-block", UNIT);
      let hungUpAt: number | undefined;
      let last = "";
      const final = await until("the unit to stop", 30_000, async () => {
        const s = await show("ActiveState", "SubState", "StatusText", "Result");
        const ms = Date.now() - t0;
        const state = `${s.ActiveState}/${s.SubState} "${s.StatusText}"`;
        if (state !== last) timeline.push({ ms, state });
        last = state;
        if (hungUpAt === undefined) {
          held.push({ ms, active: `${s.ActiveState}/${s.SubState}`, status: s.StatusText ?? "" });
          if (ms >= HOLD_AFTER_STOP_MS) {
            await control.command("end call-1", "ENDED call-1");
            hungUpAt = Date.now() - t0;
            timeline.push({ ms: hungUpAt, state: "(the call hangs up)" });
          }
        }
        return s.ActiveState === "inactive" || s.ActiveState === "failed" ? { show: s, ms } : undefined;
      }).catch(async (error: Error) => {
        throw new Error(`${error.message}\n${await systemctl("status", UNIT).catch((e: { stdout?: string }) => e.stdout)}\n${workerLog()}`);
      });
      console.log(
        `systemd e2e timeline (ms since systemctl stop; READY ${readyMs} ms after the ready command):\n` +
          timeline.map((e) => `  ${String(e.ms).padStart(6)}  ${e.state}`).join("\n"),
      );
      expect(hungUpAt).toBeDefined();
      expect(final.ms).toBeGreaterThanOrEqual(hungUpAt!);
      expect(final.ms).toBeGreaterThan(TIMEOUT_STOP_SEC * 1000 * 2);
      expect(final.show.Result).toBe("success");
      // The worker exited on its own, with 0, after the hang-up (systemd resets ExecMainCode once
      // the unit is inactive, so its own log says it): a SIGKILLed process prints no EXIT line.
      const log = workerLog().trim().split("\n");
      expect(log).toContain("SIGTERM");
      expect(log.at(-1)).toBe("EXIT 0");
      expect(log.indexOf("STATE drained")).toBeGreaterThan(log.indexOf("SIGTERM"));
      // From the first "draining" on (the STATUS= datagram follows the SIGTERM by a few ms) to the
      // hang-up: stopping, and reading "draining", also long after TimeoutStopSec passed.
      const since = held.findIndex((h) => h.status.includes("draining"));
      expect(since).toBeGreaterThanOrEqual(0);
      for (const h of held.slice(since)) {
        expect(h.active).toBe("deactivating/stop-sigterm");
        expect(h.status).toMatch(/^v1\.0\.0 draining, 1 live call left, oldest \ds$/);
      }
      expect(held.slice(since).some((h) => h.ms > TIMEOUT_STOP_SEC * 1000 + 1000)).toBe(true);
    } finally {
      control.close();
    }
  }, 90_000);
});
