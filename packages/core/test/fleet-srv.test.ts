// `openrtc fleet --srv`: workers found through DNS SRV records (node:dns resolveSrv), served here
// by a minimal real DNS server on a loopback UDP port, pointing at real workers.
import { createSocket, type Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { createControlServer, type ControlServer } from "../src/control-server.ts";
import { runFleet } from "../src/fleet-cli.ts";
import { resolveSrvTargets } from "../src/fleet-sources.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool } from "../src/pool.ts";

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, "").split(".");
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, "ascii")])), Buffer.from([0])]);
}

/** Answers SRV queries for `name` with `records()` (read per query, so tests can change it). */
async function dnsServer(name: string, records: () => Array<{ port: number; target: string }>): Promise<{ address: string; close(): Promise<void> }> {
  const socket: Socket = createSocket("udp4");
  socket.on("message", (msg, peer) => {
    let off = 12;
    const labels: string[] = [];
    while (off < msg.length && msg[off] !== 0) {
      const len = msg[off] as number;
      labels.push(msg.subarray(off + 1, off + 1 + len).toString("ascii"));
      off += len + 1;
    }
    const question = msg.subarray(12, off + 5);
    const qtype = msg.readUInt16BE(off + 1);
    const answers = labels.join(".").toLowerCase() === name && qtype === 33 ? records() : [];
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2);
    header.writeUInt16BE(answers.length > 0 ? 0x8580 : 0x8583, 2); // response, authoritative; NXDOMAIN when none
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const rrs = answers.map((a) => {
      const target = encodeName(a.target);
      const rr = Buffer.alloc(12 + 6);
      rr.writeUInt16BE(0xc00c, 0);
      rr.writeUInt16BE(33, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(0, 6);
      rr.writeUInt16BE(6 + target.length, 10);
      rr.writeUInt16BE(10, 12); // priority
      rr.writeUInt16BE(5, 14); // weight
      rr.writeUInt16BE(a.port, 16);
      return Buffer.concat([rr, target]);
    });
    socket.send(Buffer.concat([header, question, ...rrs]), peer.port, peer.address);
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  const { port } = socket.address();
  return { address: `127.0.0.1:${port}`, close: () => new Promise((r) => socket.close(() => r())) };
}

/** Resolves once `server` has served 2 more GET /snapshot: a poll that read the current state was folded in. */
function polled(server: ControlServer, n = 2): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const onRequest = (req: { url?: string }) => {
      if (req.url === "/snapshot" && ++seen >= n) {
        server.server.off("request", onRequest);
        resolve();
      }
    };
    server.server.on("request", onRequest);
  });
}

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

async function worker(version: string, id: string, calls: number): Promise<{ pool: AgentPool; server: ControlServer; port: number }> {
  const pool = new AgentPool({ deploymentVersion: version, workerId: id, logger: silentLogger });
  const server = await createControlServer(pool);
  pool.markReady();
  for (let i = 0; i < calls; i++) pool.startSession({ jobId: `${id}-${i}`, metadata: { tenant: "acme" } });
  cleanup.push(() => server.close(), () => pool.close({ dropLiveSessions: true }));
  return { pool, server, port: Number(new URL(server.url).port) };
}

describe("openrtc fleet --srv", () => {
  it("resolves SRV records to worker URLs and reads the fleet they name, re-resolving each poll", async () => {
    const v1 = await worker("v1.0.0", "srv-v1", 1);
    const v2 = await worker("v2.0.0", "srv-v2", 2);
    let records = [
      { port: v1.port, target: "localhost" },
      { port: v2.port, target: "localhost" },
    ];
    const name = "_openrtc._tcp.workers.test";
    const dns = await dnsServer(name, () => records);
    cleanup.push(() => dns.close());

    expect(await resolveSrvTargets(name, { servers: [dns.address] })).toEqual([`http://localhost:${v1.port}`, `http://localhost:${v2.port}`].sort());

    const out = { stdout: "", stderr: "" };
    const io = { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env: {} };
    expect(await runFleet(["status", "--srv", name, "--dns", dns.address, "--version", "v2.0.0", "--json"], io)).toBe(0);
    const report = JSON.parse(out.stdout);
    expect(report).toMatchObject({ status: "in_progress", totals: { workers: 2, live_calls: 3 } });

    // v1 drains and leaves DNS (as a headless Service drops a terminated pod): wait sees it gone.
    v1.pool.beginDrain();
    const gate = runFleet(["wait", "--srv", name, "--dns", dns.address, "--version", "v2.0.0", "--interval", "20ms", "--timeout", "60s"], io);
    await polled(v1.server);
    v1.pool.session("srv-v1-0")?.end({ status: "success" });
    await polled(v1.server);
    records = records.filter((r) => r.port !== v1.port);
    expect(await gate).toBe(0);
    expect(out.stdout).toContain("deploy to v2.0.0 done");
  });

  it("a name that does not resolve is reported, exit 2", async () => {
    const dns = await dnsServer("_openrtc._tcp.other.test", () => []);
    cleanup.push(() => dns.close());
    const out = { stdout: "", stderr: "" };
    const io = { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), env: {} };
    expect(await runFleet(["status", "--srv", "_openrtc._tcp.missing.test", "--dns", dns.address], io)).toBe(2);
    expect(out.stderr).toMatch(/could not read workers' control servers: .*ENOTFOUND|queryServ/i);
  });
});
