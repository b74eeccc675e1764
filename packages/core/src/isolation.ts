import type { Logger } from "./logger.ts";

/**
 * User code the core calls back into (event listeners, hooks, loggers) must never reach the
 * state machine or the caller: a throwing `sessionEnded` listener once left a pool draining
 * forever, and a throwing listener on a socket `close` handler took a LiveKit parent (and every
 * live call in it) down. Everything here catches, reports and carries on.
 */

/** Called with what went wrong in a listener or hook; itself isolated. */
export type IsolationReport = (where: string, error: unknown) => void;

// One wording of an error for every log line and record the core writes.
export { describeError } from "./audit/errors.ts";

/** Runs `fn`; a throw goes to `report` (which may not throw either) and `fn`'s result is dropped. */
export function isolated(where: string, fn: () => unknown, report: IsolationReport): void {
  try {
    const result = fn();
    // An async listener's rejection is as much a failure as a throw, and must not surface as an
    // unhandled rejection (which Node turns into a process exit).
    if (result !== null && typeof result === "object" && typeof (result as Promise<unknown>).then === "function") {
      (result as Promise<unknown>).then(undefined, (error: unknown) => safeReport(report, where, error));
    }
  } catch (error) {
    safeReport(report, where, error);
  }
}

function safeReport(report: IsolationReport, where: string, error: unknown): void {
  try {
    report(where, error);
  } catch {
    // The reporter itself failed (a broken logger): nowhere left to report to.
  }
}

/** A logger whose methods never throw, whatever the wrapped one does. */
export function safeLogger(logger: Logger): Logger {
  const wrap =
    (level: keyof Logger) =>
    (fields: object, message: string): void => {
      try {
        logger[level](fields, message);
      } catch {
        // A logger that throws must not turn a log line into a dropped call.
      }
    };
  return { debug: wrap("debug"), info: wrap("info"), warn: wrap("warn"), error: wrap("error") };
}
