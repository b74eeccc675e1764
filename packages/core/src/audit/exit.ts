/**
 * Last-moment synchronous flushes. `process.exit()` and a crash on an uncaught exception run no
 * more event-loop turns: records still queued in memory would be lost. Whatever registers here
 * (an `AuditLog`, a file sink) gets one synchronous call on `exit` and on an uncaught exception.
 *
 * One pair of process listeners serves every flusher (no MaxListeners warnings with many logs),
 * and `uncaughtExceptionMonitor` is used rather than `uncaughtException`: it observes the crash
 * without changing it (a listener on `uncaughtException` would keep a broken process running).
 * Flushers run in registration order; one that throws does not stop the others.
 */
type Flusher = () => void;

const flushers = new Set<Flusher>();
let installed = false;

function runAll(): void {
  for (const flush of [...flushers]) {
    try {
      flush();
    } catch {
      // Exiting anyway: a failing flusher must not keep the others from running.
    }
  }
}

/** Registers `flush` for process exit and uncaught exceptions; returns the unregister function. */
export function onProcessExit(flush: Flusher): () => void {
  if (!installed) {
    installed = true;
    process.on("exit", runAll);
    process.on("uncaughtExceptionMonitor", runAll);
  }
  flushers.add(flush);
  return () => {
    flushers.delete(flush);
  };
}
