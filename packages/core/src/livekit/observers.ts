import type { SessionInfo, SessionOutcome } from "../sessions.ts";
import type { Logger } from "../logger.ts";
import { describeError, safeLogger } from "../isolation.ts";

/**
 * Watches sessions where the `AgentSession` lives (the job process), e.g. to tag and bucket
 * per-session metrics by `deploymentVersion` and `tenant` (voicegateway's observer).
 */
export interface SessionObserver<S = unknown> {
  readonly name?: string;
  onSessionStart?(info: SessionInfo, session: S | null): void | Promise<void>;
  onSessionEnd?(info: SessionInfo, outcome: SessionOutcome): void | Promise<void>;
}

export const DEFAULT_OBSERVER_TIMEOUT_MS = 2000;

/**
 * Calls every observer, each isolated: one that throws or hangs is logged and skipped after the
 * timeout, and never delays or fails the call itself beyond that bound.
 */
export async function notifyObservers(
  observers: readonly SessionObserver[],
  call: (observer: SessionObserver) => void | Promise<void>,
  logger: Logger,
  timeoutMs = DEFAULT_OBSERVER_TIMEOUT_MS,
): Promise<void> {
  // The report of a failed observer must not fail the call either.
  const log = safeLogger(logger);
  await Promise.all(
    observers.map(async (observer, index) => {
      let name = `observer#${index}`;
      let timer: NodeJS.Timeout | undefined;
      try {
        if (typeof observer.name === "string") name = observer.name;
        await Promise.race([
          Promise.resolve().then(() => call(observer)),
          new Promise<void>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`did not finish within ${timeoutMs} ms`)), timeoutMs);
            timer.unref();
          }),
        ]);
      } catch (error) {
        log.warn({ observer: name, err: describeError(error) }, "session observer failed; skipped");
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    }),
  );
}
