/**
 * Fuzz targets. Each throws many inputs at one real part of the core and counts:
 * - `inputs`: what it sent;
 * - `crashes`: a throw out of an API that must never throw, a server that stopped answering, or
 *   (counted by the runner) an uncaught exception or unhandled rejection in the process;
 * - `forgeries`: an input accepted that no secret holder produced (a manifest or membership
 *   token that verifies, a drain without the token, a session ended by a peer that does not own it).
 * `pnpm fuzz` runs them at full size; test/fuzz.test.ts runs a short variant in the suite.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { AgentPool } from "../../src/pool.ts";
import { silentLogger } from "../../src/logger.ts";
import { createControlServer } from "../../src/control-server.ts";
import { ManifestGate, manifestCanonical, signManifest, type SignedManifest } from "../../src/manifest.ts";
import { MembershipError, MembershipVerifier, signMembership, type MembershipClaim } from "../../src/membership.ts";
import { SESSION_KEY_ENV, SessionChannel, parseChannelMessage } from "../../src/livekit/session-channel.ts";
import { Random } from "./random.ts";

export interface FuzzResult {
  target: string;
  inputs: number;
  crashes: number;
  forgeries: number;
  /** What the first few crashes or forgeries were (inputs are described, never secrets). */
  findings: string[];
}

function result(target: string): FuzzResult {
  return { target, inputs: 0, crashes: 0, forgeries: 0, findings: [] };
}

function finding(r: FuzzResult, kind: "crash" | "forgery", detail: string): void {
  if (kind === "crash") r.crashes++;
  else r.forgeries++;
  if (r.findings.length < 10) r.findings.push(`${kind}: ${detail.slice(0, 300)}`);
}

const NOW = 1_790_000_000;
const FUZZ_SECRET = "fuzz-secret-not-a-real-one";

// ---------------------------------------------------------------------------------------------
// Manifest parser and gate

function mutateManifestObject(rng: Random, valid: SignedManifest): unknown {
  const m: Record<string, unknown> = { ...valid, active_versions: [...valid.active_versions] };
  switch (rng.int(12)) {
    case 0:
      m.seq = rng.chance(0.5) ? valid.seq + 1 + rng.int(1000) : rng.value();
      break;
    case 1:
      (m.active_versions as unknown[]).push(rng.chance(0.5) ? "evil" : rng.string(8));
      break;
    case 2:
      m.active_versions = rng.chance(0.5) ? [] : rng.value();
      break;
    case 3:
      m.issued_at = rng.chance(0.5) ? valid.issued_at + (rng.chance(0.5) ? 1e-6 : 1) : rng.value();
      break;
    case 4:
      m.expires_at = rng.chance(0.5) ? valid.expires_at + 1 + rng.int(1e6) : rng.value();
      break;
    case 5:
      m.signature = rng.mutate(valid.signature);
      break;
    case 6:
      m.signature = valid.signature.toUpperCase();
      break;
    case 7:
      delete m[rng.pick(["seq", "active_versions", "issued_at", "expires_at", "signature"])];
      break;
    case 8:
      m[rng.pick(["__proto__", "constructor", "extra", "toJSON"])] = rng.value();
      break;
    case 9:
      // Same versions spelled differently (order, unicode forms): the order is not signed, the spelling is.
      m.active_versions = [...valid.active_versions].reverse().map((v) => (rng.chance(0.3) ? v.normalize("NFD") + (rng.chance(0.5) ? "\u0301" : "") : v));
      break;
    case 10:
      m.seq = valid.seq;
      m.active_versions = [...valid.active_versions, "v9"];
      break;
    default:
      return rng.value();
  }
  return m;
}

export function fuzzManifest(count: number, seed: number): FuzzResult {
  const r = result("manifest parser + gate");
  const rng = new Random(seed);
  const valid = signManifest({ seq: 5, activeVersions: ["v1", "v2.0.0-é"], issuedAt: NOW - 10, expiresAt: NOW + 3600, secret: FUZZ_SECRET });
  const validText = JSON.stringify(valid);
  const authentic = manifestCanonical(valid.seq, valid.active_versions, valid.issued_at, valid.expires_at);
  let gate: ManifestGate | undefined;
  for (let i = 0; i < count; i++) {
    // Half the time against a gate holding the authentic manifest, half against an empty one.
    if (i % 5000 === 0) {
      gate = new ManifestGate({ secrets: [FUZZ_SECRET, "second-secret"], clock: () => NOW, logger: silentLogger });
      if ((i / 5000) % 2 === 0) gate.offer(valid, "seed");
    }
    let input: unknown;
    switch (rng.int(5)) {
      case 0:
        input = rng.mutateMany(validText);
        break;
      case 1:
        input = mutateManifestObject(rng, valid);
        break;
      case 2:
        input = JSON.stringify(mutateManifestObject(rng, valid));
        break;
      case 3:
        input = rng.chance(0.5) ? rng.bytes(128) : Buffer.from(rng.mutateMany(validText));
        break;
      default:
        input = rng.chance(0.5) ? JSON.stringify(rng.value()) : rng.string(64);
    }
    r.inputs++;
    let offered;
    try {
      offered = gate!.offer(input, "fuzz");
    } catch (error) {
      finding(r, "crash", `offer threw ${String(error)}`);
      continue;
    }
    const current = gate!.current;
    if (offered.accepted) {
      const accepted = current === null ? "" : manifestCanonical(current.seq, current.active_versions, current.issued_at, current.expires_at);
      if (accepted !== authentic) finding(r, "forgery", `accepted a manifest no secret signed: ${JSON.stringify(current).slice(0, 200)}`);
    }
    if (gate!.isMember("evil") || (current !== null && gate!.isMember("v9"))) finding(r, "forgery", "an unsigned version became a member");
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Membership verifier

export function fuzzMembership(count: number, seed: number): FuzzResult {
  const r = result("membership verifier");
  const rng = new Random(seed);
  const verifier = new MembershipVerifier({ secrets: [FUZZ_SECRET, "rotated-secret"], clock: () => NOW, maxAgeSeconds: 300 });
  const pinned = new MembershipVerifier({ secrets: [FUZZ_SECRET], clock: () => NOW, expectedVersion: "v2.0.0" });
  const bases: MembershipClaim[] = [
    ["v2.0.0", "worker-1", NOW - 1.5],
    ["v2.0.0", "wörker-😀", NOW],
    ["v1", "w\u0000", NOW + 100.25],
    ["é", "e\u0301", NOW - 299],
  ].map(([version, workerId, timestamp]) => ({
    version: version as string,
    workerId: workerId as string,
    timestamp: timestamp as number,
    token: signMembership({ version: version as string, workerId: workerId as string, timestamp: timestamp as number, secret: FUZZ_SECRET }),
  }));
  const isBase = (c: MembershipClaim) =>
    bases.some((b) => b.token === c.token && b.version === c.version && b.workerId === c.workerId && b.timestamp === c.timestamp);
  for (let i = 0; i < count; i++) {
    const base = rng.pick(bases);
    const claim: Record<string, unknown> = { ...base };
    switch (rng.int(9)) {
      case 0:
        claim.token = rng.mutate(base.token);
        break;
      case 1:
        claim.version = rng.chance(0.5) ? rng.mutate(base.version) : base.version.normalize(rng.chance(0.5) ? "NFD" : "NFC");
        break;
      case 2:
        claim.workerId = rng.mutate(base.workerId);
        break;
      case 3:
        claim.timestamp = rng.chance(0.7) ? base.timestamp + rng.pick([1e-9, 1e-6, 0.001, 1, -1, 300, 1e3]) : rng.pick([NOW * 1000, -0, NaN, Infinity, "1000", null]);
        break;
      case 4:
        claim.token = base.token.toUpperCase();
        break;
      case 5:
        claim.token = rng.pick(bases).token;
        break;
      case 6:
        claim[rng.pick(["token", "version", "workerId", "timestamp"])] = rng.value();
        break;
      case 7:
        claim.token = String.fromCharCode(0x100 + base.token.charCodeAt(0)) + base.token.slice(1);
        break;
      default:
        // Re-signed with a secret the verifier does not hold.
        claim.token = signMembership({ version: base.version, workerId: base.workerId, timestamp: base.timestamp, secret: `x${rng.string(6)}` });
    }
    const input = rng.chance(0.02) ? rng.value() : claim;
    r.inputs++;
    for (const v of [verifier, pinned]) {
      let valid: boolean;
      try {
        valid = v.isValid(input as MembershipClaim);
      } catch (error) {
        finding(r, "crash", `isValid threw ${String(error)}`);
        continue;
      }
      if (valid && !isBase(input as MembershipClaim)) finding(r, "forgery", `a claim no secret signed verified: ${JSON.stringify(input)}`);
      try {
        v.verify(input as MembershipClaim);
        if (!valid) finding(r, "crash", "verify passed where isValid failed");
      } catch (error) {
        if (!(error instanceof MembershipError)) finding(r, "crash", `verify threw a non-MembershipError: ${String(error)}`);
        else if (valid) finding(r, "crash", "verify threw where isValid passed");
      }
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Session channel: the schema in-process, then the real unix socket

function channelLine(rng: Random, jobs: readonly string[], wrongKey: string): string {
  const job = rng.chance(0.8) ? rng.pick(jobs) : rng.string(12);
  switch (rng.int(9)) {
    case 0:
      return JSON.stringify({ t: "start", job, pid: 1 + rng.int(1e6), ...(rng.chance(0.7) ? { key: rng.chance(0.5) ? wrongKey : rng.string(64) } : {}) });
    case 1:
      return JSON.stringify({ t: "end", job, status: rng.pick(["success", "failed", "cancelled", "exploded", 1]) });
    case 2:
      return rng.mutateMany(JSON.stringify({ t: rng.pick(["start", "end"]), job, pid: 7, status: "success", key: wrongKey }));
    case 3:
      return JSON.stringify(rng.value());
    case 4:
      return rng.pick(["null", "[]", "{}", "0", '""', "true", "{", "\u0000", ""]);
    case 5:
      return "x".repeat(rng.chance(0.5) ? 9000 : 20_000);
    case 6:
      return JSON.stringify({ t: "end", job, status: "failed", error: rng.string(3000) });
    case 7:
      return JSON.stringify({ ...(rng.value(2) as object), t: rng.pick(["start", "end"]), job });
    default:
      return rng.string(80);
  }
}

export function fuzzChannelSchema(count: number, seed: number): FuzzResult {
  const r = result("session channel schema");
  const rng = new Random(seed);
  const jobs = ["job-0", "job-1", "job-2"];
  for (let i = 0; i < count; i++) {
    const line = channelLine(rng, jobs, "0".repeat(64));
    r.inputs++;
    try {
      const parsed = parseChannelMessage(line);
      if (parsed.ok) {
        const m = parsed.message as Record<string, unknown>;
        const shapeOk =
          typeof m.job === "string" &&
          (m.t === "start" ? Number.isSafeInteger(m.pid) && (m.key === undefined || typeof m.key === "string") : m.t === "end" && ["success", "failed", "cancelled"].includes(m.status as string));
        if (!shapeOk) finding(r, "forgery", `schema let through ${line.slice(0, 120)}`);
      }
    } catch (error) {
      finding(r, "crash", `parseChannelMessage threw ${String(error)}`);
    }
  }
  return r;
}

async function openPeer(path: string): Promise<Socket & { whenClosed: Promise<void> }> {
  const socket = connect(path) as Socket & { whenClosed: Promise<void> };
  socket.on("error", () => {});
  // Listening from the start: the parent may close a refused peer before the fuzzer looks.
  socket.whenClosed = new Promise((resolve) => socket.once("close", () => resolve()));
  // Read (and discard) the parent's replies, or a paused socket never sees its end.
  socket.resume();
  await once(socket, "connect");
  return socket;
}

/**
 * Over the real socket: sessions job-0..job-9 are live; job-0..job-4 are claimed by their real
 * job processes (right key). Fuzz peers never hold the key. Any session ending is a forgery; the
 * parent must keep serving (a clean claim and end afterwards works).
 */
export async function fuzzChannelSocket(count: number, seed: number): Promise<FuzzResult> {
  const r = result("session channel socket");
  const rng = new Random(seed);
  const pool = new AgentPool({ deploymentVersion: "v1", logger: silentLogger });
  const channel = await SessionChannel.listen(pool, { exportEnv: false, claimTimeoutMs: 200 });
  const key = channel.env[SESSION_KEY_ENV]!;
  const jobs = Array.from({ length: 10 }, (_, i) => `job-${i}`);
  const sessions = jobs.map((jobId) => pool.startSession({ jobId }));
  const owners: Socket[] = [];
  for (const jobId of jobs.slice(0, 5)) {
    const owner = await openPeer(channel.path);
    owner.write(`${JSON.stringify({ t: "start", job: jobId, pid: 100, key })}\n`);
    owners.push(owner);
  }
  const wrongKey = key.replace(/./, (c) => (c === "0" ? "1" : "0"));
  try {
    let sent = 0;
    while (sent < count) {
      // A few peers at a time, each sending a burst of lines (sometimes split mid-line) and closing.
      const burst = Array.from({ length: 8 }, async () => {
        const socket = await openPeer(channel.path);
        const lines = 1 + rng.int(50);
        let payload = "";
        for (let i = 0; i < lines && sent < count; i++, sent++) {
          payload += `${channelLine(rng, jobs, rng.chance(0.5) ? wrongKey : key.toUpperCase())}${rng.chance(0.97) ? "\n" : ""}`;
          r.inputs++;
        }
        const cut = rng.int(payload.length + 1);
        socket.write(payload.slice(0, cut));
        await new Promise((resolve) => setImmediate(resolve));
        if (!socket.destroyed) socket.end(payload.slice(cut));
        await socket.whenClosed;
      });
      await Promise.all(burst);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (const [index, session] of sessions.entries()) {
      if (session.ended) finding(r, "forgery", `job-${index} was ended by a peer that does not own it (${session.outcome?.status})`);
    }
    // The parent still serves: the real owner of job-0 ends its call.
    owners[0]!.write(`${JSON.stringify({ t: "end", job: "job-0", status: "success" })}\n`);
    const deadline = Date.now() + 5000;
    while (!sessions[0]!.ended && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    if (sessions[0]!.outcome?.status !== "success") finding(r, "crash", "the channel stopped serving its real job processes");
  } finally {
    for (const owner of owners) owner.destroy();
    await channel.close();
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Control server over real HTTP

const METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "post", "G\u0000T", "POST ", "XYZ"];
const PATHS = ["/drain", "/drain/", "/drain?x=1", "//drain", "/DRAIN", "/%64rain", "/drain#x", "/livez", "/readyz", "/metrics", "/snapshot", "/sessions", "/manifest", "*", "http://evil/drain", "/../drain", "/drain%00", `/${"a".repeat(5000)}`];

function header(rng: Random, token: string, phase: "token" | "hostile"): { lines: string[]; marker: string | undefined } {
  const out: string[] = [];
  let marker: string | undefined;
  const authorization = rng.pick([
    "Bearer wrong",
    `Bearer ${token.toUpperCase()}`,
    `Bearer ${token.slice(0, -1)}`,
    `Bearer ${token}x`,
    `Basic ${Buffer.from(`u:${token}`).toString("base64")}`,
    `Bearer\t${rng.mutate(token)}`,
    "Bearer",
    "",
  ]);
  // A mutation can leave the token intact (a cut past its end, upper-casing its digits): that
  // would be a real credential, not a forgery. The fuzzer never sends one.
  if (rng.chance(phase === "hostile" ? 0.3 : 0.6)) out.push(`Authorization: ${carriesToken(authorization, token) ? `${authorization}x` : authorization}`);
  if (phase === "hostile") {
    // Every request here carries at least one marker that must cost it loopback trust.
    marker = rng.pick([
        `Host: ${rng.pick(["evil.example", "127.0.0.1.evil.example", "localhost.evil", "[::2]", "0x7f000001", "127.1", ""])}${rng.chance(0.5) ? ":8081" : ""}`,
        `Origin: ${rng.pick(["https://evil.example", "null", "http://127.0.0.1.evil", "file://", rng.string(12)])}`,
        `Sec-Fetch-Site: ${rng.pick(["cross-site", "same-site", "CROSS-SITE", rng.string(6)])}`,
        `X-Forwarded-For: ${rng.pick(["203.0.113.9", "127.0.0.1", ""])}`,
        "Forwarded: for=127.0.0.1",
        "Via: 1.1 proxy",
        "X-Real-IP: 127.0.0.1",
        "X-Envoy-External-Address: 127.0.0.1",
      ]);
    out.push(marker);
  } else if (rng.chance(0.5)) out.push(`Host: ${rng.pick(["localhost", "127.0.0.1:1", "evil", ""])}`);
  const extras = rng.int(4);
  for (let i = 0; i < extras; i++) {
    const name = rng.pick(["Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "X-Junk", rng.string(10), "Host", "Cookie"]);
    const value = rng.pick(["text/plain", "application/json", "chunked", "close", "100-continue", "-1", "99999999999", "0", rng.string(40), "a".repeat(9000)]);
    out.push(`${name}: ${value}`);
  }
  return { lines: out, marker };
}

function requestBytes(rng: Random, token: string, phase: "token" | "hostile"): { bytes: string; slow: boolean } {
  const body = rng.pick(["", "{}", '{"actor":"fuzz","reason":"x"}', "null", "[]", '{"actor":1}', rng.string(64), "x".repeat(rng.int(6000)), JSON.stringify(rng.value())]);
  const method = rng.chance(0.7) ? rng.pick(["POST", "GET"]) : rng.pick(METHODS);
  const path = rng.chance(0.6) ? rng.pick(["/drain", "/sessions", "/manifest"]) : rng.chance(0.8) ? rng.pick(PATHS) : `/${rng.string(20)}`;
  const version = rng.chance(0.9) ? "HTTP/1.1" : rng.pick(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", ""]);
  const { lines: headers, marker } = header(rng, token, phase);
  // A loopback Host unless the request's hostile marker is its Host (Node itself answers 400 to
  // an HTTP/1.1 request without one, which would test nothing of ours).
  const hasHost = headers.some((h) => h.toLowerCase().startsWith("host:"));
  const lines = [`${method} ${path} ${version}`, ...(!hasHost && !rng.chance(0.05) ? [`Host: ${rng.pick(["127.0.0.1", "localhost:8081", "[::1]"])}`] : []), ...headers];
  if (rng.chance(0.8)) lines.push(`Content-Length: ${rng.chance(0.9) ? Buffer.byteLength(body) : rng.int(100)}`);
  let bytes = `${lines.join("\r\n")}\r\n\r\n${body}`;
  if (rng.chance(0.1)) {
    const mutated = rng.mutateMany(bytes, 3);
    // A mutation that erased the hostile marker would make an honest local request of it.
    if (marker === undefined || mutated.includes(`\r\n${marker}\r\n`)) bytes = mutated;
  }
  if (rng.chance(0.05)) bytes += bytes; // pipelined
  return { bytes, slow: rng.chance(0.05) };
}

/** Sends one raw request; resolves with the first bytes of the answer ("" when none came in time). */
async function sendRaw(port: number, bytes: string, slow: boolean, rng: Random): Promise<string> {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  await once(socket, "connect").catch(() => undefined);
  const done = new Promise<string>((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve("");
    }, slow ? 80 : 25);
    socket.once("data", (chunk: Buffer) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(chunk.toString("latin1"));
    });
    socket.once("close", () => {
      clearTimeout(timer);
      resolve("");
    });
  });
  if (slow) {
    // A slow client: the request trickles in a few bytes at a time (and may never finish).
    const pieces = 2 + rng.int(6);
    const size = Math.ceil(bytes.length / pieces);
    for (let i = 0; i < bytes.length && !socket.destroyed; i += size) {
      socket.write(bytes.slice(i, i + size));
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  } else socket.write(bytes);
  return done;
}

/** Whether an Authorization value is the real credential, by the server's own rule. */
function carriesToken(authorization: string, token: string): boolean {
  return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization)?.[1] === token;
}

const READ_REQUEST = /^(GET|HEAD) \/(sessions|manifest)(\?\S*)? HTTP\/1\.[01]\r\n/;

async function alive(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/livez`)).status === 200;
  } catch {
    return false;
  }
}

/**
 * Two phases against a real server: with `trustLoopback: false` no request knows the token; with
 * loopback trusted, every request carries something that must cost it that trust (a foreign
 * Host, a cross-site Origin or Sec-Fetch-Site, a proxy header). A drain in either is a forgery.
 */
export async function fuzzControlServer(count: number, seed: number, concurrency = 32): Promise<FuzzResult> {
  const r = result("control server (HTTP)");
  const rng = new Random(seed);
  const token = "fuzz-drain-token-0123456789";
  for (const phase of ["token", "hostile"] as const) {
    const pool = new AgentPool({ deploymentVersion: "v1", logger: silentLogger });
    pool.startSession({ jobId: "live-call", roomName: "room" });
    const server = await createControlServer(pool, { drainToken: token, trustLoopback: phase === "hostile" });
    const port = Number(new URL(server.url).port);
    try {
      const budget = Math.ceil(count / 2);
      let sent = 0;
      const inFlight = new Set<string>();
      let drainCulprits: string[] | undefined;
      const worker = async () => {
        while (sent < budget && !pool.draining) {
          sent++;
          r.inputs++;
          const { bytes, slow } = requestBytes(rng, token, phase);
          inFlight.add(bytes);
          const answer = await sendRaw(port, bytes, slow, rng);
          if (pool.draining && drainCulprits === undefined) drainCulprits = [...inFlight];
          inFlight.delete(bytes);
          if (READ_REQUEST.test(bytes) && (answer.startsWith("HTTP/1.1 200") || answer.includes("no manifest gate"))) {
            finding(r, "forgery", `${phase}: an unauthenticated read of sessions/manifest was served: ${JSON.stringify(bytes.slice(0, 200))}`);
          }
        }
      };
      for (let done = 0; done < budget; ) {
        const before = sent;
        await Promise.all(Array.from({ length: concurrency }, () => worker()));
        done = sent;
        if (sent === before || pool.draining) break;
      }
      // Requests run concurrently, so the culprit is one of those in flight; the seed replays it.
      if (pool.draining) {
        const withToken = (drainCulprits ?? []).filter((b) => b.split("\r\n").some((line) => /^authorization:/i.test(line) && carriesToken(line.slice(line.indexOf(":") + 1).trim(), token)));
        finding(r, "forgery", `${phase}: a request without the right token drained the worker; in flight: ${JSON.stringify((drainCulprits ?? []).map((b) => b.slice(0, 160)))}${withToken.length > 0 ? " (one carried the token: a fuzzer bug)" : ""}`);
      }
      if (!(await alive(server.url))) finding(r, "crash", `${phase}: the control server stopped answering /livez`);
      if (pool.activeSessions !== 1) finding(r, "forgery", `${phase}: the live call was touched`);
    } finally {
      await server.close();
    }
  }
  return r;
}
