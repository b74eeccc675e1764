export { startDispatcher } from "./dispatcher.ts";
export { waitForEvent } from "./wait-for-event.ts";
export { placementOrder, type PlacementCandidate } from "./placement.ts";
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
  AuthRejection,
  DispatchRequest,
  DispatchSummary,
  Dispatcher,
  DispatcherEventName,
  DispatcherEvents,
  DispatcherLogger,
  DispatcherOptions,
  FateCounts,
  JobFate,
  JobHandle,
  JobRecord,
  JobState,
  OfferAnswer,
  OfferRecord,
  PlacementStrategy,
  TypedEmitter,
  WorkerStatusName,
  WorkerView,
} from "./types.ts";
