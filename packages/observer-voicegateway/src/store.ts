/**
 * Where buckets live. `InMemoryStore` is the default when no collector is configured, the store
 * `compare` reads, and what the in-process collector keeps. The export format is mergeable:
 * several workers' exports loaded into one store give the same buckets as one worker that saw
 * every call.
 */
import { Bucket, bucketId, type BucketJSON, type BucketKey, type BucketOptions } from "./bucket.ts";
import type { CallRecord } from "./call.ts";

export const EXPORT_FORMAT = "openrtc.observer-voicegateway.buckets.v1";

export interface BucketsExport {
  readonly format: typeof EXPORT_FORMAT;
  readonly exportedAt: number;
  readonly buckets: readonly BucketJSON[];
}

export interface BucketFilter {
  version?: string;
  tenant?: string;
  agent?: string;
}

/** What `compare` needs from a store. */
export interface MetricsStore {
  buckets(filter?: BucketFilter): readonly Bucket[];
}

export interface InMemoryStoreOptions extends BucketOptions {
  /**
   * Bound on distinct buckets (version × tenant × agent). Calls for a new key beyond it are
   * pooled under tenant "other", so a tenant-id explosion cannot grow memory without bound.
   */
  maxBuckets?: number;
}

export const OTHER_TENANT = "other";

export class InMemoryStore implements MetricsStore {
  private readonly map = new Map<string, Bucket>();
  private readonly options: InMemoryStoreOptions;
  readonly maxBuckets: number;

  constructor(options: InMemoryStoreOptions = {}) {
    this.options = options;
    this.maxBuckets = options.maxBuckets ?? 10_000;
  }

  get size(): number {
    return this.map.size;
  }

  record(call: CallRecord): void {
    this.bucketFor({ version: call.deploymentVersion, tenant: call.tenant, agent: call.agentName }).add(call);
  }

  /** Merges a bucket (e.g. from another worker's export) into the store. */
  mergeBucket(bucket: Bucket): void {
    this.bucketFor(bucket.key).merge(bucket);
  }

  /** Loads an export (`toExport()` of this or another store); throws `TypeError` if malformed. */
  load(data: unknown): number {
    if (data === null || typeof data !== "object" || (data as { format?: unknown }).format !== EXPORT_FORMAT || !Array.isArray((data as { buckets?: unknown }).buckets)) {
      throw new TypeError(`not a ${EXPORT_FORMAT} export`);
    }
    const buckets = (data as BucketsExport).buckets.map((b) => Bucket.fromJSON(b, this.options));
    for (const b of buckets) this.mergeBucket(b);
    return buckets.length;
  }

  buckets(filter: BucketFilter = {}): readonly Bucket[] {
    return [...this.map.values()].filter(
      (b) => (filter.version === undefined || b.key.version === filter.version) && (filter.tenant === undefined || b.key.tenant === filter.tenant) && (filter.agent === undefined || b.key.agent === filter.agent),
    );
  }

  versions(): string[] {
    return [...new Set([...this.map.values()].map((b) => b.key.version))].sort();
  }

  toExport(filter?: BucketFilter): BucketsExport {
    return { format: EXPORT_FORMAT, exportedAt: Date.now() / 1000, buckets: this.buckets(filter).map((b) => b.toJSON()) };
  }

  clear(): void {
    this.map.clear();
  }

  private bucketFor(key: BucketKey): Bucket {
    let id = bucketId(key);
    let bucket = this.map.get(id);
    if (bucket === undefined && this.map.size >= this.maxBuckets) {
      key = { ...key, tenant: OTHER_TENANT };
      id = bucketId(key);
      bucket = this.map.get(id);
    }
    if (bucket === undefined) {
      bucket = new Bucket(key, this.options);
      this.map.set(id, bucket);
    }
    return bucket;
  }
}
