import { JobType, type RegisterWorkerRequest } from "@livekit/protocol";

/** livekit/protocol agent/environment.go `MaxDeploymentLength`. */
export const MAX_DEPLOYMENT_BYTES = 64;

/**
 * Mirrors livekit/protocol `agent/environment.go` `ValidateDeployment`: "" is fine (an ordinary
 * deployment); otherwise at most 64 bytes (UTF-8 bytes, not characters), no `_` (reserved), no
 * byte <= 0x20 or 0x7f. Returns the server's error text, or undefined when valid. The texts
 * match the Go messages so logs read the same as a real server's.
 */
export function validateDeployment(deployment: string): string | undefined {
  if (deployment === "") return undefined;
  const bytes = Buffer.from(deployment, "utf8");
  if (bytes.length > MAX_DEPLOYMENT_BYTES) return `deployment exceeds ${MAX_DEPLOYMENT_BYTES} bytes`;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x5f) return "deployment contains reserved character '_'";
    if (c <= 0x20 || c === 0x7f) return `deployment contains whitespace or control byte at position ${i}`;
  }
  return undefined;
}

/**
 * Mirrors livekit/livekit `pkg/agent/worker.go` `WorkerRegisterer.HandleRegister`: an unknown job
 * type ("unknown job type") or an invalid deployment fails the registration. The server then
 * ends the handshake and closes the connection without a RegisterWorkerResponse.
 */
export function validateRegistration(req: RegisterWorkerRequest): string | undefined {
  if (!(req.type in JobType) || typeof JobType[req.type] !== "string") return "unknown job type";
  return validateDeployment(req.deployment);
}

/** livekit/livekit `pkg/service/agentservice.go` `workerKey`: workers and jobs meet only on equal keys. */
export interface WorkerKey {
  agentName: string;
  namespace: string;
  jobType: JobType;
  deployment: string;
}

export function workerKeyString(k: WorkerKey): string {
  return JSON.stringify([k.agentName, k.namespace, k.jobType, k.deployment]);
}

export function jobTypeName(t: JobType): string {
  return JobType[t] ?? String(t);
}
