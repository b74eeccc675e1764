// The coordinator's side of signed membership: it writes the active-version manifest to a file
// every worker watches (OPENRTC_MANIFEST_FILE), as a platform would update a mounted ConfigMap.
import { randomBytes } from "node:crypto";
import { rename, writeFile } from "node:fs/promises";
import { signManifest, type SignedManifest } from "@openrtc/core";
import type { Clock } from "@openrtc/core";
import { systemClock } from "@openrtc/core";

export class ManifestFile {
  readonly path: string;
  readonly #secret: string;
  readonly #clock: Clock;
  #seq = 0;
  current: SignedManifest | undefined;

  constructor(path: string, secret: string, clock: Clock = systemClock) {
    this.path = path;
    this.#secret = secret;
    this.#clock = clock;
  }

  /** Signs and atomically replaces the manifest (write beside, then rename: no torn reads). */
  async publish(activeVersions: readonly string[]): Promise<SignedManifest> {
    const manifest = signManifest({ seq: ++this.#seq, activeVersions, issuedAt: this.#clock(), secret: this.#secret });
    const tmp = `${this.path}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(tmp, `${JSON.stringify(manifest)}\n`, { mode: 0o600 });
    await rename(tmp, this.path);
    this.current = manifest;
    return manifest;
  }
}
