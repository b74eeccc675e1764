import { readFileSync } from "node:fs";
import path from "node:path";
import { attachProcessLifecycle, createControlServer, fileManifest, type AgentPool, type ControlServer, type LiveSessionView } from "@openrtc/core";
import { watchDirectory, type DirectoryWatch } from "./file-watch.ts";
import { kubernetesMembership, membershipOf } from "./membership.ts";
import { DRAIN_ANNOTATION, parseDownwardApiFile, readPodInfo, resolvePodInfoDir, VERSION_LABEL } from "./podinfo.ts";

/** The control port both this adapter and the @livekit/agents health server default to. */
export const DEFAULT_PORT = 8081;
/** How often the podinfo annotations are re-read when no file event arrives. */
const ANNOTATION_POLL_MS = 1000;
/** How often the mounted manifest is re-read when no file event arrives. */
const MANIFEST_POLL_MS = 2000;
/** Stuck calls named one by one in the drain-timeout log line (the audit record has up to 50). */
const STUCK_LOG_SESSIONS = 20;

export interface KubernetesOptions {
  /** Default `0.0.0.0` (the kubelet probes the pod IP). */
  host?: string;
  /**
   * Default `OPENRTC_PORT`, else 8081. The @livekit/agents health server also defaults to 8081 in
   * production: give the AgentServer `ServerOptions({ port: 0 })` (a free port) or another port.
   */
  port?: number;
  /** Bearer token for `POST /drain`; default `OPENRTC_DRAIN_TOKEN`. Required unless bound to loopback. */
  drainToken?: string;
  /** The Downward API volume; default `/etc/podinfo` when it exists. */
  podInfoDir?: string;
  /** A mounted ConfigMap holding the signed manifest (needs the pool built with `membership: kubernetesMembership()`). */
  manifestFile?: string;
  /** Manifest secrets (rotation: any one may have signed); default `OPENRTC_MANIFEST_SECRETS`, comma-separated. */
  manifestSecrets?: readonly string[] | string;
  /** Keep serving this long after the drain completed and the pool closed, before the process exits. Default 0. */
  shutdownDelayMs?: number;
  /** Default `process.exit`. */
  exit?: (code: number) => void;
}

export interface KubernetesAttachment {
  /** The control server's URL (probes, metrics, snapshot, drain). */
  readonly url: string;
  /** Removes every listener this attachment added and stops its server and watchers. Idempotent. */
  close(): Promise<void>;
}

/**
 * Maps Kubernetes to the pool: the probes and `POST /drain` (preStop) on the core's control
 * server, the pod's Downward API (version label check, pod name and namespace on drain records,
 * the `openrtc.io/drain` annotation), the mounted signed manifest, and exit through the pool's
 * one process lifecycle (SIGTERM drains there; this adds no signal handler of its own).
 */
export async function attachKubernetes(pool: AgentPool, options: KubernetesOptions = {}): Promise<KubernetesAttachment> {
  const env = process.env;
  const host = options.host ?? "0.0.0.0";
  const port = options.port ?? portFromEnv(env.OPENRTC_PORT) ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`attachKubernetes: port must be an integer 0-65535, got ${String(port)}`);
  const drainToken = options.drainToken ?? nonEmpty(env.OPENRTC_DRAIN_TOKEN);
  if (drainToken !== undefined && (typeof drainToken !== "string" || drainToken.length < 16)) {
    throw new TypeError("attachKubernetes: drainToken (OPENRTC_DRAIN_TOKEN) must be a string of at least 16 characters");
  }
  if (drainToken === undefined && !isLoopback(host)) {
    throw new Error(
      `attachKubernetes: bound to ${host}, POST /drain needs a token: set OPENRTC_DRAIN_TOKEN (the openrtc-secrets Secret in deploy/k8s) or pass drainToken; only a loopback host may go without one`,
    );
  }
  const shutdownDelayMs = options.shutdownDelayMs ?? 0;
  if (!Number.isFinite(shutdownDelayMs) || shutdownDelayMs < 0) throw new TypeError(`attachKubernetes: shutdownDelayMs must be >= 0, got ${String(shutdownDelayMs)}`);

  const podInfoDir = resolvePodInfoDir(options.podInfoDir);
  const pod = readPodInfo(podInfoDir, env);
  for (const problem of pod.problems) pool.logger.warn({ problem }, "podinfo: a Downward API file could not be read");
  const podFields: Record<string, string> = {
    ...(pod.name === undefined ? {} : { pod_name: pod.name }),
    ...(pod.namespace === undefined ? {} : { pod_namespace: pod.namespace }),
  };
  if (pod.name === undefined) pool.logger.warn({ podinfo: podInfoDir ?? null }, "pod name unknown (no POD_NAME env and no podinfo name file): drain records will not name the pod");
  checkVersion(pool, pod.labels?.[VERSION_LABEL]);

  // The manifest first, so the worker is gated before anything can offer it a job.
  let disconnectManifest: (() => void) | undefined;
  let gate = membershipOf(pool);
  if (gate === null && options.manifestFile !== undefined) {
    // A pool built without a gate takes this one before it serves (AgentPool.adopt refuses once
    // the worker serves or saw a job, so no call is ever taken before the manifest counts).
    const adopted = kubernetesMembership();
    try {
      pool.adopt({ membership: adopted });
    } catch (error) {
      throw new Error(`attachKubernetes: manifestFile: ${errorText(error)}; or create the pool with new AgentPool({ membership: kubernetesMembership(), ... })`, { cause: error });
    }
    gate = adopted;
  }
  if (options.manifestFile !== undefined || (gate !== null && gate !== "foreign" && !gate.connected)) {
    if (gate === null || gate === "foreign") {
      throw new Error("attachKubernetes: the pool has its own membership gate; attach fileManifest(path) to your ManifestGate yourself, or create the pool with membership: kubernetesMembership()");
    }
    if (options.manifestFile === undefined && !gate.hasOwnSources) {
      throw new Error("attachKubernetes: the pool uses kubernetesMembership() but no manifestFile was given (the mounted ConfigMap, e.g. /etc/openrtc/manifest/manifest.json)");
    }
    const secrets = parseSecrets(options.manifestSecrets ?? env.OPENRTC_MANIFEST_SECRETS);
    if (secrets.length === 0) throw new Error("attachKubernetes: the manifest needs its secrets: set OPENRTC_MANIFEST_SECRETS (comma-separated for rotation) or pass manifestSecrets");
    disconnectManifest = gate.connect({
      secrets,
      sources: options.manifestFile === undefined ? [] : [fileManifest(options.manifestFile, { pollIntervalMs: MANIFEST_POLL_MS })],
      logger: pool.logger,
    });
  }

  let server: ControlServer;
  try {
    server = await createControlServer(pool, { host, port, ...(drainToken === undefined ? {} : { drainToken }), drainFields: podFields });
  } catch (error) {
    disconnectManifest?.();
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new Error(
        `attachKubernetes: port ${port} on ${host} is already in use. If it is the @livekit/agents health server (ServerOptions port, ${DEFAULT_PORT} by default in production), give the AgentServer another port (ServerOptions({ port: 0 }) picks a free one with @openrtc/core/livekit) or move this server with OPENRTC_PORT / the port option, and keep the probes in the Deployment on this one`,
        { cause: error },
      );
    }
    throw error;
  }
  const serverPort = Number(new URL(server.url).port);

  // The AgentServer's health server, started after this one on the same port, would die of an
  // uncaught EADDRINUSE that names no cause: say what happened and what to change.
  const onUncaught = (error: Error) => {
    const e = error as NodeJS.ErrnoException & { port?: number };
    if (e?.code === "EADDRINUSE" && e.port === serverPort) {
      pool.logger.error(
        { port: serverPort },
        `port ${serverPort} is taken by the OpenRTC control server (attachKubernetes); the @livekit/agents health server listens on ServerOptions port (${DEFAULT_PORT} by default in production): set ServerOptions({ port: 0 }) or another port`,
      );
    }
  };
  process.on("uncaughtExceptionMonitor", onUncaught);

  // A drain past drainTimeoutMs: the core records it (snapshot drain_stuck, openrtc_drain_stuck,
  // deployment.drain_stuck); this line names the pod and each stuck call's age. Nothing is killed:
  // terminationGracePeriodSeconds is the only hard limit.
  const onDrainStuck = (live: LiveSessionView[]) => {
    pool.logger.warn(
      {
        ...podFields,
        active_sessions: live.length,
        stuck_sessions: live.slice(0, STUCK_LOG_SESSIONS).map((s) => ({ job_id: s.job_id, tenant: s.tenant, age_seconds: s.age_seconds })),
      },
      `drain outlived drainTimeoutMs with ${live.length} live call(s) (ages ${live
        .slice(0, STUCK_LOG_SESSIONS)
        .map((s) => `${Math.floor(s.age_seconds)}s`)
        .join(", ")}${live.length > STUCK_LOG_SESSIONS ? ", ..." : ""}); not killed: Kubernetes' terminationGracePeriodSeconds is the only hard limit`,
    );
  };
  pool.on("drainStuck", onDrainStuck);

  // The drain annotation: the kubelet rewrites the annotations file when it changes.
  let annotationWatch: DirectoryWatch | undefined;
  let lastAnnotations: string | undefined;
  let annotationProblem: string | undefined;
  const checkAnnotations = () => {
    if (podInfoDir === undefined || pool.draining || pool.state === "closed") return;
    const file = path.join(podInfoDir, "annotations");
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      return; // Not projected, or mid-swap: the next event or poll reads it.
    }
    if (text === lastAnnotations) return;
    lastAnnotations = text;
    let annotations: Record<string, string>;
    try {
      annotations = parseDownwardApiFile(text);
    } catch (error) {
      const message = (error as Error).message;
      if (message !== annotationProblem) pool.logger.warn({ file, problem: message }, "podinfo annotations file could not be parsed; the drain annotation is not read from it");
      annotationProblem = message;
      return;
    }
    annotationProblem = undefined;
    const value = annotations[DRAIN_ANNOTATION];
    if (value === undefined) return;
    if (value !== "true") {
      pool.logger.warn({ annotation: DRAIN_ANNOTATION, value }, `the drain annotation is set but not to "true"; ignored`);
      return;
    }
    pool.beginDrain({ actor: "kubernetes", reason: `pod annotation ${DRAIN_ANNOTATION}=true`, fields: { ...podFields, trigger: "annotation" } });
  };
  if (podInfoDir !== undefined) {
    checkAnnotations();
    annotationWatch = watchDirectory(podInfoDir, checkAnnotations, ANNOTATION_POLL_MS);
  }

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      annotationWatch?.close();
      process.off("uncaughtExceptionMonitor", onUncaught);
      pool.off("drainStuck", onDrainStuck);
      disconnectManifest?.();
      await server.close();
    })();
    return stopped;
  };
  // One shutdown path: SIGTERM drains through the lifecycle (runApp's, if it attached first);
  // this adds the server's stop (run after the AgentServer's, as it attached earlier) and the
  // delay. `metricsLingerMs` runs after the pool closed, i.e. after the last call ended.
  const lifecycle = attachProcessLifecycle(pool, {
    beforeExit: () => stop(),
    // The kubelet's SIGTERM is Kubernetes retiring the pod: recorded as such, with the pod.
    signalDrain: { actor: "kubernetes", fields: podFields },
    ...(shutdownDelayMs > 0 ? { metricsLingerMs: shutdownDelayMs } : {}),
    ...(options.exit === undefined ? {} : { exit: options.exit }),
  });

  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    close: () => {
      closing ??= (async () => {
        lifecycle.detach();
        await stop();
      })();
      return closing;
    },
  };
}

/** The version from the pod's label when the code set none (code wins; a mismatch is logged). */
function checkVersion(pool: AgentPool, label: string | undefined): void {
  if (label === undefined || label.trim() === "") return;
  if (pool.deploymentVersion === null) {
    try {
      pool.adopt({ deploymentVersion: label });
      pool.logger.info({ deployment_version: pool.deploymentVersion, label: VERSION_LABEL }, "deployment version taken from the pod's label");
    } catch (error) {
      pool.logger.warn(
        { label_version: label, err: errorText(error) },
        `the pod is labelled ${VERSION_LABEL}=${label} but the pool could not take it (${errorText(error)}); attach before runApp, or create the pool with new AgentPool({ deploymentVersion: kubernetesDeploymentVersion() })`,
      );
    }
  } else if (pool.deploymentVersion !== label.trim()) {
    pool.logger.warn({ code_version: pool.deploymentVersion, label_version: label }, `the pool's deploymentVersion differs from the pod's ${VERSION_LABEL} label; the pool's version is used`);
  }
}

function portFromEnv(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const port = Number(value);
  if (!/^\d+$/.test(value.trim()) || port > 65535) throw new TypeError(`OPENRTC_PORT must be a port number, got ${JSON.stringify(value)}`);
  return port;
}

function parseSecrets(value: readonly string[] | string | undefined): string[] {
  if (value === undefined) return [];
  const list = typeof value === "string" ? value.split(",") : [...value];
  return list.map((s) => String(s).trim()).filter((s) => s !== "");
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
