// Writes a projected volume (Downward API, ConfigMap) the way the kubelet's AtomicWriter does:
// the files live in a timestamped `..<ts>` directory, `..data` is a symlink to it, and each
// visible file is a symlink `name -> ..data/name`. An update writes a new timestamped directory,
// points `..data_tmp` at it, renames that over `..data` (the one atomic step) and removes the old
// directory. A reader never sees a half-written file, and a watch on the old file goes deaf.
import { mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, lstatSync } from "node:fs";
import path from "node:path";

let counter = 0;

export function writeProjectedVolume(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[-:.]/g, "_")}.${process.pid}.${++counter}`;
  const tsDir = path.join(dir, stamp);
  mkdirSync(tsDir);
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(tsDir, name), content);
  const data = path.join(dir, "..data");
  const old = existsSync(data) ? readlinkSync(data) : undefined;
  const tmp = path.join(dir, "..data_tmp");
  rmSync(tmp, { force: true });
  symlinkSync(stamp, tmp);
  renameSync(tmp, data);
  for (const name of Object.keys(files)) {
    const link = path.join(dir, name);
    let present = false;
    try {
      present = lstatSync(link).isSymbolicLink();
    } catch {
      // not there yet
    }
    if (!present) symlinkSync(path.join("..data", name), link);
  }
  if (old !== undefined) rmSync(path.join(dir, old), { recursive: true, force: true });
}

/** A Downward API `labels`/`annotations` file body: `key="value"` lines, Go-quoted, sorted. */
export function downwardApiLines(entries: Record<string, string>): string {
  return Object.keys(entries)
    .sort()
    .map((k) => `${k}=${JSON.stringify(entries[k])}`)
    .join("\n");
}

export interface PodInfoFiles {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Raw annotations file text (overrides `annotations`), e.g. to write a broken one. */
  annotationsText?: string;
}

export function writePodInfo(dir: string, pod: PodInfoFiles): void {
  const files: Record<string, string> = {};
  if (pod.name !== undefined) files.name = pod.name;
  if (pod.namespace !== undefined) files.namespace = pod.namespace;
  if (pod.labels !== undefined) files.labels = downwardApiLines(pod.labels);
  if (pod.annotationsText !== undefined) files.annotations = pod.annotationsText;
  else if (pod.annotations !== undefined) files.annotations = downwardApiLines(pod.annotations);
  writeProjectedVolume(dir, files);
}
