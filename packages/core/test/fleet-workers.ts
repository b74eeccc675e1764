// Real workers for the fleet tests: an AgentPool with its control server, holding a number of
// calls, that can exit (drained: pool and server closed, as the lifecycle does) or vanish (the
// process is gone; the pool is left as it was, calls and all).
import { appendFile } from "node:fs/promises";
import { auditLine } from "../src/audit/line.ts";
import { createControlServer, type ControlServer, type ControlServerOptions } from "../src/control-server.ts";
import type { AuditSink } from "../src/audit/log.ts";
import { silentLogger } from "../src/logger.ts";
import { AgentPool, type Session } from "../src/pool.ts";

export interface RealWorker {
  pool: AgentPool;
  server: ControlServer;
  url: string;
  calls: Session[];
  /** Stops answering (the process is gone); the pool is left as it was. */
  vanish(): Promise<void>;
  /** Drained: close the pool and the server, as the lifecycle does on exit. */
  exit(): Promise<void>;
}

export interface StartWorkerOptions {
  clock?: () => number;
  drainTimeoutMs?: number;
  drainToken?: string;
  auditSinks?: readonly AuditSink[];
  control?: ControlServerOptions;
}

export async function startWorker(version: string, id: string, calls: number, options: StartWorkerOptions = {}): Promise<RealWorker> {
  const pool = new AgentPool({
    deploymentVersion: version,
    workerId: id,
    logger: silentLogger,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: options.drainTimeoutMs }),
    ...(options.auditSinks === undefined ? {} : { auditSinks: options.auditSinks }),
  });
  const server = await createControlServer(pool, {
    ...(options.drainToken === undefined ? {} : { drainToken: options.drainToken, trustLoopback: false }),
    ...options.control,
  });
  pool.markReady();
  const w: RealWorker = {
    pool,
    server,
    url: server.url,
    calls: [],
    vanish: () => server.close(),
    exit: async () => {
      await pool.close();
      await server.close();
    },
  };
  for (let i = 0; i < calls; i++) w.calls.push(pool.startSession({ jobId: `${id}-job-${i}`, agentName: "support", metadata: { tenant: i % 2 === 0 ? "acme" : "globex" } }));
  return w;
}

/** Closes what a test left running; a worker that already exited is skipped quietly. */
export async function stopWorkers(workers: RealWorker[]): Promise<void> {
  for (const w of workers.splice(0)) {
    await w.server.close().catch(() => undefined);
    await w.pool.close({ dropLiveSessions: true }).catch(() => undefined);
  }
}

/**
 * Resolves once `w` has served `n` more GET /snapshot requests: with n = 2, the poll that read the
 * state as it is now has been folded in (the next poll has begun).
 */
export function polled(w: RealWorker, n = 2): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const onRequest = (req: { url?: string }) => {
      if (req.url === "/snapshot" && ++seen >= n) {
        w.server.server.off("request", onRequest);
        resolve();
      }
    };
    w.server.server.on("request", onRequest);
  });
}

/**
 * One JSONL audit file shared by several pools, as a log shipper would collect them: each pool's
 * records stay in seq order (writes are chained), origins interleave.
 */
export function jsonlAuditSink(path: string): AuditSink {
  let tail: Promise<void> = Promise.resolve();
  return {
    name: "jsonl",
    write(records) {
      const text = records.map((r) => `${auditLine(r)}\n`).join("");
      tail = tail.then(() => appendFile(path, text));
      return tail;
    },
  };
}
