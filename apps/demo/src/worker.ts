// One voice-agent worker process: a real @livekit/agents AgentServer with OpenRTC attached,
// started the way agents-js workers are (`runApp`, the drop-in for `cli.runApp`):
//   node --import tsx src/worker.ts start
// Configured from the environment (what a Kubernetes pod spec or a systemd unit would set):
//   LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET   where to register
//   OPENRTC_DEPLOYMENT_VERSION                          this build's version, e.g. v2.0.0
//   OPENRTC_MANIFEST_FILE, OPENRTC_MEMBERSHIP_SECRETS   optional: the signed active-version manifest
//   OPENRTC_CONTROL_PORT                                control server port (default 0: any)
//   OPENRTC_DRAIN_TIMEOUT_MS                            when a drain counts as stuck (default 1 h)
//   OPENRTC_IDLE_PROCESSES                              warm job processes (default 2; production needs ≥ 1)
//   OPENRTC_CALLS_PER_WORKER                            calls at which the worker reports itself full (default 4)
//   OTEL_EXPORTER_OTLP_ENDPOINT                         optional: export one span per call over OTLP/HTTP
// With an IPC channel (the demo's coordinator), the worker reports {type:"ready"} and forwards
// its audit records ({type:"audit"}) so the run has one audit file; otherwise it logs them.
import { fileURLToPath } from "node:url";
import { ServerOptions } from "@livekit/agents";
import { AgentPool, attachProcessLifecycle, createControlServer, fileManifest, ManifestGate, type AuditSink } from "@openrtc/core";
import { runApp } from "@openrtc/core/livekit";

// The OTel SDK is loaded only when an endpoint is configured: loading it costs every worker
// several MB of RSS even when it exports nothing.
const telemetry =
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ? (await import("./telemetry.ts")).startTelemetry({ serviceName: "openrtc-demo-worker", deploymentVersion: process.env.OPENRTC_DEPLOYMENT_VERSION?.trim() || null })
    : undefined;

const ipc = typeof process.send === "function";
const send = (message: unknown) => {
  if (process.connected && process.send) process.send(message);
};

// Faults the chaos run injects over IPC ({type:"chaos", fault, ms}): the audit sink failing, or
// the worker reporting itself overloaded (load 1), for `ms`. Never used by `pnpm demo`.
const faultUntil = { audit_fail: 0, overload: 0 };
process.on("message", (m: { type?: string; fault?: keyof typeof faultUntil; ms?: number }) => {
  if (m?.type === "chaos" && m.fault !== undefined && m.fault in faultUntil) faultUntil[m.fault] = Date.now() + Number(m.ms ?? 0);
});

/** Forwards audit records to the coordinator, which writes the run's single audit file. */
const forwardSink: AuditSink = {
  name: "coordinator",
  write(records) {
    // The pool keeps the batch and retries it: a failing sink never reaches a call.
    if (Date.now() < faultUntil.audit_fail) return Promise.reject(new Error("chaos: injected audit sink failure"));
    if (!ipc) {
      for (const r of records) process.stderr.write(`${JSON.stringify(r)}\n`);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      if (!process.connected) return reject(new Error("coordinator IPC channel closed"));
      process.send!({ type: "audit", records }, (error: Error | null) => (error ? reject(error) : resolve()));
    });
  },
};

const secrets = (process.env.OPENRTC_MEMBERSHIP_SECRETS ?? "").split(",").filter((s) => s !== "");
let membership: ManifestGate | undefined;
if (process.env.OPENRTC_MANIFEST_FILE) {
  // A forged, stale, expired or torn manifest is refused (the current one stays); the pool
  // records each refusal as worker.manifest_rejected. No valid manifest: not a member.
  membership = new ManifestGate({ secrets });
}

const pool = new AgentPool({
  deploymentVersion: process.env.OPENRTC_DEPLOYMENT_VERSION,
  auditSinks: [forwardSink],
  ...(membership ? { membership } : {}),
  ...(process.env.OPENRTC_DRAIN_TIMEOUT_MS ? { drainTimeoutMs: Number(process.env.OPENRTC_DRAIN_TIMEOUT_MS) } : {}),
});
// Attached once the pool exists, so the first (synchronous) read can already be audited.
if (membership) membership.attach(fileManifest(process.env.OPENRTC_MANIFEST_FILE!, { pollIntervalMs: 250 }));
const control = await createControlServer(pool, { port: Number(process.env.OPENRTC_CONTROL_PORT ?? 0) });
// Joins the lifecycle runApp attaches (one shutdown path): the control server and the OTel SDK
// stop after the AgentServer closed.
attachProcessLifecycle(pool, {
  beforeExit: async () => {
    await control.close();
    await telemetry?.shutdown();
  },
});
pool.on("state", (state) => send({ type: "state", state }));
// The coordinator's IPC channel closing must not end the worker or its calls.
process.on("disconnect", () => {});

const callsPerWorker = Number(process.env.OPENRTC_CALLS_PER_WORKER ?? 4);
const app = await runApp(
  pool,
  new ServerOptions({
    agent: fileURLToPath(new URL("./agent.ts", import.meta.url)),
    host: "127.0.0.1",
    port: 0,
    // Load by calls held, not by CPU: the SDK's default (the machine's CPU share, full at 0.7 in
    // production) reads a 2-core box running a whole fleet as full most of the time, and LiveKit
    // never offers a job to a full worker. OPENRTC_CALLS_PER_WORKER calls make a worker full.
    loadFunc: async () => (Date.now() < faultUntil.overload ? 1 : pool.activeSessions / callsPerWorker),
    loadThreshold: 1,
    // Warm job processes (the SDK's production default here, min(cores, 4)): each job takes one
    // and the SDK starts its replacement, so a call arriving meanwhile is not held by a cold start.
    numIdleProcesses: Number(process.env.OPENRTC_IDLE_PROCESSES ?? 2),
    shutdownProcessTimeout: 10_000,
    // A job process must load @livekit/agents before its entry runs; on a busy 2-core box that
    // takes longer than the SDK's 10 s default (30 s and more while other test suites load the
    // machine), and a job whose process timed out never runs (the binding then reports it failed
    // to LiveKit once this budget and the assignment wait have passed).
    initializeProcessTimeout: Number(process.env.OPENRTC_JOB_INIT_TIMEOUT_MS ?? 50_000),
  }),
);
app?.server.event.on("worker_registered", (workerId: string) => send({ type: "ready", workerId, controlUrl: control.url, pid: process.pid }));
