import type { EventEmitter } from "node:events";
import type { TypedEmitter } from "./types.ts";

/**
 * Resolves with the listener arguments of the first `event` whose arguments satisfy
 * `predicate`; rejects after `timeoutMs` with a message naming the event. Tests wait on
 * events this way instead of sleeping.
 */
export function waitForEvent<E extends Record<string, unknown[]>, K extends keyof E & string>(
  emitter: TypedEmitter<E>,
  event: K,
  predicate?: (...args: E[K]) => boolean,
  timeoutMs?: number,
): Promise<E[K]>;
export function waitForEvent(
  emitter: EventEmitter,
  event: string,
  predicate?: (...args: any[]) => boolean,
  timeoutMs?: number,
): Promise<unknown[]>;
export function waitForEvent<A extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  predicate: (...args: A) => boolean = () => true,
  timeoutMs = 20_000,
): Promise<A> {
  return new Promise<A>((resolve, reject) => {
    const listener = (...args: unknown[]) => {
      let ok: boolean;
      try {
        ok = predicate(...(args as A));
      } catch (e) {
        cleanup();
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      if (ok) {
        cleanup();
        resolve(args as A);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`waitForEvent: no matching "${event}" event within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      emitter.off(event, listener);
    };
    emitter.on(event, listener);
  });
}
