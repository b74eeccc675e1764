// `@openrtc/adapter-k8s/watch`: the manifest ConfigMap read through the Kubernetes API, for
// updates within a second instead of the kubelet's volume sync (up to a minute or more). Needs
// the optional peer `@kubernetes/client-node` and RBAC to get/list/watch that one ConfigMap
// (deploy/k8s/base/shared/rbac.yaml).
import { readFileSync } from "node:fs";
import { CoreV1Api, KubeConfig, Watch } from "@kubernetes/client-node";
import type { ManifestSink, ManifestSource } from "@openrtc/core";

const SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

export interface ConfigMapManifestOptions {
  /** The ConfigMap's name, e.g. `openrtc-manifest`. */
  name: string;
  /** Default `POD_NAMESPACE`, else the service account's namespace, else `default`. */
  namespace?: string;
  /** The data key holding the signed manifest JSON. Default `manifest.json`. */
  key?: string;
  /** Default: `loadFromDefault()` (in a pod: the service account). */
  kubeConfig?: KubeConfig;
  /** Wait before re-watching after an error. Default 1000 ms (doubling to 30 s while it keeps failing). */
  retryDelayMs?: number;
  /** Observes the watch loop (tests, debugging). */
  onEvent?: (event: ConfigMapWatchEvent) => void;
}

export type ConfigMapWatchEvent =
  | { type: "listed"; resourceVersion: string }
  | { type: "watching"; resourceVersion: string }
  | { type: "changed"; eventType: string; resourceVersion: string }
  | { type: "gone"; resourceVersion: string }
  | { type: "error"; message: string };

/**
 * A `ManifestSource` fed by list + watch on one ConfigMap: it lists (field selector
 * `metadata.name`), offers the manifest, then watches from the list's resourceVersion; a watch
 * that ends resumes from the last resourceVersion seen (events and bookmarks); a `410 Gone`
 * (that version was compacted away) re-lists. The gate decides what counts (signature, seq,
 * expiry), so a replayed or forged ConfigMap changes nothing.
 */
export function configMapManifest(options: ConfigMapManifestOptions): ManifestSource {
  if (typeof options?.name !== "string" || options.name === "") throw new TypeError("configMapManifest: name (the ConfigMap's name) is required");
  const namespace = options.namespace ?? process.env.POD_NAMESPACE ?? readNamespaceFile() ?? "default";
  const key = options.key ?? "manifest.json";
  return new ConfigMapSource(options, namespace, key);
}

class ConfigMapSource implements ManifestSource {
  readonly name: string;
  #sink: ManifestSink | undefined;
  #closed = false;
  #abort: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #resourceVersion = "";
  #last: string | undefined;
  #failures = 0;
  readonly #kc: KubeConfig;
  readonly #api: CoreV1Api;
  readonly #watch: Watch;

  constructor(
    private readonly options: ConfigMapManifestOptions,
    private readonly namespace: string,
    private readonly key: string,
  ) {
    this.name = `configmap:${namespace}/${options.name}#${key}`;
    this.#kc = options.kubeConfig ?? defaultKubeConfig();
    this.#api = this.#kc.makeApiClient(CoreV1Api);
    this.#watch = new Watch(this.#kc);
  }

  start(sink: ManifestSink): void {
    if (this.#sink !== undefined) throw new Error(`${this.name}: already started; create one source per gate`);
    this.#sink = sink;
    void this.#list();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#abort?.abort();
  }

  #emit(event: ConfigMapWatchEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // An observer must not break the watch.
    }
  }

  async #list(): Promise<void> {
    if (this.#closed) return;
    try {
      const list = await this.#api.listNamespacedConfigMap({ namespace: this.namespace, fieldSelector: `metadata.name=${this.options.name}` });
      if (this.#closed) return;
      this.#resourceVersion = list.metadata?.resourceVersion ?? "";
      const item = list.items[0];
      if (item === undefined) this.#unreadable(`ConfigMap ${this.namespace}/${this.options.name} not found; keeping the current manifest`);
      else this.#deliver(item.data?.[this.key]);
      this.#emit({ type: "listed", resourceVersion: this.#resourceVersion });
      this.#failures = 0;
      void this.#startWatch();
    } catch (error) {
      this.#failed(error, () => void this.#list());
    }
  }

  async #startWatch(): Promise<void> {
    if (this.#closed) return;
    let gone = false;
    const rv = this.#resourceVersion;
    this.#emit({ type: "watching", resourceVersion: rv });
    try {
      this.#abort = await this.#watch.watch(
        `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/configmaps`,
        { fieldSelector: `metadata.name=${this.options.name}`, resourceVersion: rv, allowWatchBookmarks: true },
        (type, object: { code?: number; metadata?: { resourceVersion?: string }; data?: Record<string, string> }) => {
          if (this.#closed) return;
          if (type === "ERROR") {
            // A Status object: 410 means our resourceVersion is too old to resume from.
            if (object?.code === 410) gone = true;
            else this.#unreadable(`watch error from the API: ${JSON.stringify(object).slice(0, 300)}`);
            return;
          }
          const next = object?.metadata?.resourceVersion;
          if (next !== undefined) this.#resourceVersion = next;
          if (type === "BOOKMARK") return;
          this.#emit({ type: "changed", eventType: type, resourceVersion: this.#resourceVersion });
          if (type === "DELETED") this.#unreadable(`ConfigMap ${this.namespace}/${this.options.name} was deleted; keeping the current manifest`);
          else this.#deliver(object?.data?.[this.key]);
        },
        (error: unknown) => {
          if (this.#closed) return;
          if (gone || (error as { statusCode?: number } | null)?.statusCode === 410) {
            this.#emit({ type: "gone", resourceVersion: rv });
            this.#resourceVersion = "";
            void this.#list();
          } else if (error === null || error === undefined || (error as { name?: string }).name === "AbortError") {
            // The server ended the watch (its timeout): resume where we were.
            this.#failures = 0;
            void this.#startWatch();
          } else {
            this.#failed(error, () => void this.#startWatch());
          }
        },
      );
    } catch (error) {
      this.#failed(error, () => void this.#startWatch());
    }
  }

  #failed(error: unknown, retry: () => void): void {
    if (this.#closed) return;
    const message = error instanceof Error ? error.message : String(error);
    this.#emit({ type: "error", message });
    this.#failures++;
    const delay = Math.min((this.options.retryDelayMs ?? 1000) * 2 ** (this.#failures - 1), 30_000);
    this.#timer = setTimeout(retry, delay);
    this.#timer.unref();
  }

  #deliver(text: string | undefined): void {
    if (text === undefined) {
      this.#unreadable(`ConfigMap ${this.namespace}/${this.options.name} has no key ${this.key}; keeping the current manifest`);
      return;
    }
    if (text === this.#last) return;
    this.#last = text;
    this.#sink?.offer(text);
  }

  #unreadable(reason: string): void {
    const key = `\0${reason}`;
    if (key === this.#last) return;
    this.#last = key;
    this.#sink?.unreadable(reason);
  }
}

function defaultKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kc;
}

function readNamespaceFile(): string | undefined {
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
