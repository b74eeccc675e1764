export { systemClock } from "./clock.ts";
export type { Clock } from "./clock.ts";
export { AuditEventType, AuditLog, AuditSinkTimeoutError } from "./audit/log.ts";
export type {
  AuditChainHead,
  AuditEmitFields,
  AuditFlushOptions,
  AuditFlushResult,
  AuditHooks,
  AuditLogOptions,
  AuditLogStats,
  AuditRecord,
  AuditSink,
  AuditSinkStats,
  AuditUndelivered,
} from "./audit/log.ts";
export type { AuditCheckpointOptions, ExpectedCheckpoint, ExternalCheckpointSigner } from "./audit/checkpoint.ts";
// Hashing, checkpoint messages, file naming and line helpers for sink authors: `@openrtc/core/audit`.
export { AuditVerifier, verifyAuditLog } from "./audit/verify.ts";
export type {
  AuditChainSummary,
  AuditFault,
  AuditLineInput,
  AuditLinePosition,
  AuditLostRange,
  AuditVerifyFailure,
  AuditVerifyOk,
  AuditVerifyOptions,
  AuditVerifyResult,
} from "./audit/verify.ts";
export { AgentPool, MAX_VERSION_LENGTH, Session } from "./pool.ts";
export type { AgentPoolOptions, CloseOptions, CloseResult, MembershipGate, PoolEvents, StartSessionOptions } from "./pool.ts";
export { JobRejectedError } from "./drain.ts";
export type { DrainOptions, PoolState, RejectReason } from "./drain.ts";
export type { LiveSessionView, SessionEnd, SessionInfo, SessionOutcome, SessionStatus } from "./sessions.ts";
export { RuntimeSnapshot, SNAPSHOT_KEYS } from "./snapshot.ts";
export type { RuntimeSnapshotJSON } from "./snapshot.ts";
export { DEFAULT_TENANT, INVALID_TENANT, InvalidMetadataError, parseMetadata } from "./tenant.ts";
export type { ParsedMetadata, ParseMetadataOptions, TenantPolicy } from "./tenant.ts";
export { EXTRA_METRIC_NAMES, METRIC_NAMES, OTHER_EVENT, OTHER_TENANT, PoolMetrics } from "./metrics.ts";
export type { MetricsOptions } from "./metrics.ts";
export { SESSION_SPAN_NAME, SessionAttributes } from "./tracing.ts";
export { createControlServer } from "./control-server.ts";
export type { ControlServer, ControlServerMount, ControlServerOptions } from "./control-server.ts";
// The deploy page (`openrtc fleet serve`, or mounted on a control server) and the fleet it reads.
export { createDeployPage, listenDeployPage } from "./fleet-page.ts";
export type { DeployPage, DeployPageOptions, LiveCallsSample, ServedDeployPage } from "./fleet-page.ts";
export { directSource, prometheusSource, readWorkersFile, resolveSrvTargets } from "./fleet-sources.ts";
export type { DirectSourceOptions, FleetSource, PrometheusSourceOptions } from "./fleet-sources.ts";
export type { WorkerReading } from "./fleet.ts";
export { attachProcessLifecycle, FORCED_EXIT_CODE } from "./lifecycle.ts";
export type { ProcessLifecycle, ProcessLifecycleOptions } from "./lifecycle.ts";
export { silentLogger, stderrLogger } from "./logger.ts";
export type { Logger } from "./logger.ts";
export {
  MembershipError,
  MembershipVerifier,
  membershipCanonical,
  pythonFloatRepr,
  pythonJsonString,
  signMembership,
} from "./membership.ts";
export type { MembershipClaim, MembershipErrorCode, MembershipVerifierOptions, SignMembershipOptions } from "./membership.ts";
export {
  DEFAULT_MANIFEST_TTL_SECONDS,
  fileManifest,
  MANIFEST_REJECTED_EVENT,
  ManifestGate,
  manifestCanonical,
  signManifest,
  staticManifest,
} from "./manifest.ts";
export type {
  AcceptedManifest,
  FileManifestOptions,
  ManifestGateOptions,
  ManifestOfferResult,
  ManifestRejectCode,
  ManifestRejection,
  ManifestSink,
  ManifestSource,
  ManifestStatus,
  MembershipReason,
  SignedManifest,
  SignManifestOptions,
} from "./manifest.ts";
export { isMainModule } from "./entry-point.ts";
