// LiveKit's `deployment` is a routing key, not a version label (livekit-server ≥ 1.12 groups
// workers by agent name, namespace, job type and deployment, and hands a job only to workers
// whose deployment equals the dispatch's; an ordinary dispatch names ""). OpenRTC's
// `deployment_version` tags; it never routes unless the user opts in.

/** The agent participant attribute naming the version that answered the call. */
export const DEPLOYMENT_VERSION_ATTRIBUTE = "openrtc.deployment_version";

/** LiveKit's own limit (livekit/protocol agent/environment.go `ValidateDeployment`). */
const MAX_DEPLOYMENT_BYTES = 64;

export class InvalidDeploymentError extends Error {
  override readonly name = "InvalidDeploymentError";
}

/**
 * Checks a deployment name by LiveKit's rules, so a bad one fails at startup with the rule it
 * broke instead of as a registration LiveKit refuses. "" (the default deployment) is valid.
 */
export function validateLivekitDeployment(name: string, source: string): string {
  if (typeof name !== "string") throw new InvalidDeploymentError(`${source} must be a string, got ${typeof name}`);
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes > MAX_DEPLOYMENT_BYTES) {
    throw new InvalidDeploymentError(`${source} ${JSON.stringify(name)} is ${bytes} bytes; LiveKit accepts at most ${MAX_DEPLOYMENT_BYTES} bytes (livekit/protocol ValidateDeployment)`);
  }
  if (name.includes("_")) {
    throw new InvalidDeploymentError(`${source} ${JSON.stringify(name)} contains "_", which LiveKit refuses in a deployment name (livekit/protocol ValidateDeployment); use "-" instead`);
  }
  if (/\s/u.test(name)) {
    throw new InvalidDeploymentError(`${source} ${JSON.stringify(name)} contains whitespace, which LiveKit refuses in a deployment name (livekit/protocol ValidateDeployment)`);
  }
  return name;
}

export interface DeploymentRoutingOptions {
  /**
   * LiveKit's routing key for this worker (`RegisterWorkerRequest.deployment`). Default: the
   * `LIVEKIT_AGENT_DEPLOYMENT` environment variable, else "" (the deployment every ordinary
   * dispatch goes to). Blue-green normally keeps both versions under one deployment.
   */
  livekitDeployment?: string;
  /**
   * Opt-in: route by version, registering `deploymentVersion` as LiveKit's deployment. Then
   * only dispatches that name that deployment (`CreateAgentDispatchRequest.deployment`,
   * `RoomAgentDispatch.deployment`) reach this worker; ordinary ones never do.
   */
  routeByVersion?: boolean;
}

/** The deployment to register with LiveKit, validated, and where it came from. */
export function resolveLivekitDeployment(
  deploymentVersion: string | null,
  options: DeploymentRoutingOptions,
  env: NodeJS.ProcessEnv = process.env,
): { deployment: string; source: string } {
  if (options.routeByVersion === true) {
    if (options.livekitDeployment !== undefined) {
      throw new InvalidDeploymentError("pass either livekitDeployment or routeByVersion, not both: routeByVersion registers deploymentVersion as the LiveKit deployment");
    }
    if (deploymentVersion === null) {
      throw new InvalidDeploymentError("routeByVersion needs the pool's deploymentVersion (new AgentPool({ deploymentVersion: \"v2.0.0\" }))");
    }
    return { deployment: validateLivekitDeployment(deploymentVersion, "deploymentVersion (routeByVersion)"), source: "deploymentVersion" };
  }
  if (options.livekitDeployment !== undefined) {
    return { deployment: validateLivekitDeployment(options.livekitDeployment, "livekitDeployment"), source: "livekitDeployment" };
  }
  return { deployment: validateLivekitDeployment(env.LIVEKIT_AGENT_DEPLOYMENT ?? "", "LIVEKIT_AGENT_DEPLOYMENT"), source: "LIVEKIT_AGENT_DEPLOYMENT" };
}
