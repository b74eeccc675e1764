import { workerKeyString, type WorkerKey } from "./registration.ts";

export interface RegisteredWorker extends WorkerKey {
  id: string;
  /** Registration order, unique. */
  seq: number;
}

/**
 * Registered workers by id and by routing key, like agentservice.go's `workers` and
 * `namespaceWorkers` maps. Workers stay listed after they leave (their records are history);
 * `ofKey` callers filter on liveness.
 */
export class WorkerRegistry<W extends RegisteredWorker> {
  readonly #byId = new Map<string, W>();
  readonly #byKey = new Map<string, W[]>();

  add(w: W): void {
    if (this.#byId.has(w.id)) throw new Error(`worker id ${w.id} registered twice`);
    this.#byId.set(w.id, w);
    const k = workerKeyString(w);
    const list = this.#byKey.get(k) ?? [];
    list.push(w);
    this.#byKey.set(k, list);
  }

  get(id: string): W | undefined {
    return this.#byId.get(id);
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  all(): W[] {
    return [...this.#byId.values()];
  }

  ids(): string[] {
    return [...this.#byId.keys()];
  }

  /** Workers registered under exactly `key`, in registration order. */
  ofKey(key: WorkerKey): W[] {
    return [...(this.#byKey.get(workerKeyString(key)) ?? [])];
  }
}
