export { startDispatcher } from "./dispatcher.ts";
export { waitForEvent } from "./wait-for-event.ts";
export { placementOrder, type PlacementCandidate } from "./placement.ts";
export {
  selectWorkerWeightedByLoad,
  NO_WORKERS_AVAILABLE,
  NO_WORKERS_WITH_CAPACITY,
  type Selection,
  type SelectionCandidate,
} from "./selection.ts";
export { seededRandom } from "./random.ts";
export { validateDeployment, validateRegistration, MAX_DEPLOYMENT_BYTES, type WorkerKey } from "./registration.ts";
export { judge, type EndSignal, type Judgement } from "./call-fate.ts";
export { markerDirPresence } from "./presence.ts";
export {
  spawnWorker,
  workerLauncherPath,
  holdCallAgentPath,
  type SpawnWorkerOptions,
  type SpawnedWorker,
  type LauncherMessage,
  type LauncherCommand,
} from "./spawn-worker.ts";
export type {
  AgentPresence,
  AuthRejection,
  CauseCounts,
  CutShortCause,
  DispatchRequest,
  DispatchSummary,
  Dispatcher,
  DispatcherEventName,
  DispatcherEvents,
  DispatcherLogger,
  DispatcherOptions,
  DispatcherProfile,
  FateCounts,
  JobFate,
  JobHandle,
  JobRecord,
  JobState,
  OfferAnswer,
  OfferRecord,
  PlacementStrategy,
  RegistrationRejection,
  SelectionStrategy,
  ServerJobStatus,
  TypedEmitter,
  WorkerStatusName,
  WorkerView,
} from "./types.ts";
