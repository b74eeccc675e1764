export { attachKubernetes, DEFAULT_PORT } from "./attach.ts";
export type { KubernetesAttachment, KubernetesOptions } from "./attach.ts";
export { KubernetesMembership, kubernetesMembership } from "./membership.ts";
export type { KubernetesMembershipOptions } from "./membership.ts";
export {
  DEFAULT_PODINFO_DIR,
  DRAIN_ANNOTATION,
  kubernetesDeploymentVersion,
  parseDownwardApiFile,
  PodInfoError,
  readPodInfo,
  VERSION_LABEL,
} from "./podinfo.ts";
export type { DeploymentVersionOptions, PodInfo } from "./podinfo.ts";
export { preStop } from "./prestop.ts";
export type { PreStopResult } from "./prestop.ts";
