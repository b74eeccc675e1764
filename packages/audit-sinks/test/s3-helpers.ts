import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import type { AuditRecord } from "@openrtc/core/audit";
import { startFauxqs } from "fauxqs";
import { s3AuditLines } from "../src/s3/index.ts";
import type { S3SinkOptions } from "../src/s3/index.ts";

export const BUCKET = "audit";
/** fauxqs accepts any credentials; these are not secrets. */
const CREDENTIALS = { accessKeyId: "test", secretAccessKey: "test" };

export type S3Server = Awaited<ReturnType<typeof startFauxqs>>;

/** A real S3-protocol server (fauxqs, in memory) on 127.0.0.1 with the test bucket. */
export async function startS3(port = 0): Promise<S3Server> {
  const server = await startFauxqs({ port, logger: false });
  server.createBucket(BUCKET);
  return server;
}

export function clientConfig(port: number, requestTimeoutMs = 2_000): NonNullable<S3SinkOptions["clientConfig"]> {
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    requestHandler: { requestTimeout: requestTimeoutMs, connectionTimeout: requestTimeoutMs, throwOnRequestTimeout: true },
  };
}

export function s3Client(port: number): S3Client {
  return new S3Client(clientConfig(port));
}

/** A port nothing listens on (connection refused) until a test starts a server there. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A server that accepts connections and never answers: the outage the AWS SDK waits on forever. */
export async function startHungServer(port = 0): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** A pass-through HTTP proxy in front of `targetPort` that records each request's headers. */
export async function startRecordingProxy(targetPort: number): Promise<{ port: number; requests: SeenRequest[]; close: () => Promise<void> }> {
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    const upstream = http.request(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (response) => {
        res.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function tempDir(name: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `${name}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Plain records with the AuditRecord shape (not hash-chained), for layout and delivery checks. */
export function fakeRecords(from: number, to: number, origin = "host-a-1", timestamp = 1_763_800_000): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (let seq = from; seq <= to; seq++) {
    out.push({
      seq,
      timestamp: timestamp + seq / 1000,
      event: "worker.rejected",
      actor: "system",
      target: `job-${seq}`,
      result: "rejected",
      version: "v2",
      reason: "membership",
      origin,
      prev_hash: "0".repeat(64),
      hash: seq.toString(16).padStart(64, "0"),
    });
  }
  return out;
}

export async function collectLines(port: number, prefix?: string): Promise<string[]> {
  const lines: string[] = [];
  const client = s3Client(port);
  try {
    for await (const line of s3AuditLines({ client, bucket: BUCKET, ...(prefix !== undefined && { prefix }) })) lines.push(line);
  } finally {
    client.destroy();
  }
  return lines;
}

/** Waits (without a deadline of its own: the test timeout bounds it) until `predicate` holds. */
export async function eventually(predicate: () => boolean | Promise<boolean>, pollMs = 10): Promise<void> {
  while (!(await predicate())) await new Promise((resolve) => setTimeout(resolve, pollMs));
}
