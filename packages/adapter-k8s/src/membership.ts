import { ManifestGate, stderrLogger, type Logger, type ManifestGateOptions, type ManifestRejection, type ManifestSource, type MembershipGate } from "@openrtc/core";

/** Marks the status object of a gate made by `kubernetesMembership()` so `attachKubernetes` finds it. */
const GATE = Symbol.for("openrtc.adapter-k8s.membership");

export interface KubernetesMembershipOptions extends Omit<ManifestGateOptions, "secrets" | "sources" | "logger"> {
  /** More manifest sources besides the mounted file, e.g. `configMapManifest()` from `@openrtc/adapter-k8s/watch`. */
  sources?: readonly ManifestSource[];
}

export interface ConnectOptions {
  secrets: readonly string[];
  sources: readonly ManifestSource[];
  logger?: Logger;
}

/**
 * A membership gate for `new AgentPool({ membership })` whose manifest sources and secrets come
 * later, from `attachKubernetes({ manifestFile, manifestSecrets })`. The pool fixes its gate at
 * construction, while the Kubernetes settings belong to the adapter: this gate bridges the two.
 * Until it is connected it fails closed (not a member, reason `no_manifest`) unless `failOpen`.
 * Once connected it is a `ManifestGate` (signature, seq order, expiry, state file) and forwards
 * its changes and rejections to the pool (`worker.manifest_rejected`).
 */
export class KubernetesMembership implements MembershipGate {
  readonly #options: KubernetesMembershipOptions;
  readonly #listeners = new Set<() => void>();
  readonly #rejectionListeners = new Set<(rejection: ManifestRejection) => void>();
  readonly #pending: ManifestRejection[] = [];
  #gate: ManifestGate | undefined;
  #connected = false;
  #used = false;

  constructor(options: KubernetesMembershipOptions = {}) {
    this.#options = options;
  }

  /** The underlying gate once connected (it stays readable after a disconnect). */
  get gate(): ManifestGate | undefined {
    return this.#gate;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Whether sources besides a mounted file were given (then a manifestFile is optional). */
  get hasOwnSources(): boolean {
    return (this.#options.sources?.length ?? 0) > 0;
  }

  isMember(version: string | null): boolean {
    return this.#gate === undefined ? this.#options.failOpen === true : this.#gate.isMember(version);
  }

  reason(version: string | null): string | undefined {
    if (this.#gate !== undefined) return this.#gate.reason(version);
    return this.isMember(version) ? undefined : "no_manifest";
  }

  status(): unknown {
    const base = this.#gate?.status() ?? {
      state: "none",
      seq: null,
      active_versions: null,
      issued_at: null,
      expires_at: null,
      source: null,
      accepted_at: null,
      fail_open: this.#options.failOpen === true,
      min_seq: this.#options.minSeq ?? 0,
    };
    const status = { ...base, connected: this.#connected };
    // Not enumerable, so `GET /manifest` never shows it.
    Object.defineProperty(status, GATE, { value: this, enumerable: false });
    return status;
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  subscribeRejections(listener: (rejection: ManifestRejection) => void): () => void {
    this.#rejectionListeners.add(listener);
    for (const rejection of this.#pending.splice(0)) safe(() => listener(rejection));
    return () => {
      this.#rejectionListeners.delete(listener);
    };
  }

  /**
   * Creates the `ManifestGate` with these secrets and starts the sources (a file source reads
   * synchronously, so a valid mounted manifest counts before this returns). Returns the
   * disconnect function. A gate connects once: sources cannot be restarted.
   */
  connect(options: ConnectOptions): () => void {
    if (this.#used) throw new Error("this kubernetesMembership() gate was already connected; create a new pool and gate for a new attachment");
    this.#used = true;
    const gate = new ManifestGate({ ...this.#options, secrets: options.secrets, sources: [], logger: options.logger ?? stderrLogger });
    // Subscribed before the sources start, so their first (synchronous) delivery is seen.
    const offChange = gate.subscribe(() => this.#notify());
    const offRejected = gate.subscribeRejections((rejection) => this.#rejected(rejection));
    this.#gate = gate;
    this.#connected = true;
    try {
      for (const source of [...options.sources, ...(this.#options.sources ?? [])]) gate.attach(source);
    } finally {
      this.#notify();
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#connected = false;
      offChange();
      offRejected();
      gate.close();
    };
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) safe(listener);
  }

  #rejected(rejection: ManifestRejection): void {
    if (this.#rejectionListeners.size === 0) {
      if (this.#pending.length >= 16) this.#pending.shift();
      this.#pending.push(rejection);
      return;
    }
    for (const listener of [...this.#rejectionListeners]) safe(() => listener(rejection));
  }
}

/** A membership gate whose manifest `attachKubernetes` connects (see `KubernetesMembership`). */
export function kubernetesMembership(options: KubernetesMembershipOptions = {}): KubernetesMembership {
  return new KubernetesMembership(options);
}

/**
 * The pool's membership gate as the adapter sees it, through the pool's public API:
 * `null` without a gate, `"foreign"` for a gate this adapter did not make.
 */
export function membershipOf(pool: { manifestStatus(): unknown }): KubernetesMembership | "foreign" | null {
  const status = pool.manifestStatus();
  if (status === null) return null;
  const gate = typeof status === "object" ? (status as Record<symbol, unknown>)[GATE] : undefined;
  return gate instanceof KubernetesMembership ? gate : "foreign";
}

function safe(fn: () => unknown): void {
  try {
    fn();
  } catch {
    // The pool isolates its own listeners; anything else must not break manifest delivery.
  }
}
