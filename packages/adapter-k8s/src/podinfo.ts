import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { stderrLogger, type Logger } from "@openrtc/core";

/** Where the deploy/k8s manifests mount the Downward API volume. */
export const DEFAULT_PODINFO_DIR = "/etc/podinfo";
/** The recommended Kubernetes label that carries the version a pod runs. */
export const VERSION_LABEL = "app.kubernetes.io/version";
/** `kubectl annotate pod NAME openrtc.io/drain=true` begins the drain of that pod. */
export const DRAIN_ANNOTATION = "openrtc.io/drain";

/** A Downward API file that is not in the kubelet's `key="value"` line format. */
export class PodInfoError extends Error {
  override readonly name = "PodInfoError";
}

/** What the Downward API volume (and the POD_NAME/POD_NAMESPACE env vars) say about this pod. */
export interface PodInfo {
  /** The podinfo directory read, or undefined when there is none. */
  readonly dir: string | undefined;
  readonly name: string | undefined;
  readonly namespace: string | undefined;
  readonly labels: Readonly<Record<string, string>> | undefined;
  readonly annotations: Readonly<Record<string, string>> | undefined;
  /** Files that exist but could not be read or parsed, as messages (never fatal). */
  readonly problems: readonly string[];
}

/**
 * Parses a Downward API `labels` or `annotations` file. The kubelet writes one `key="value"` line
 * per entry, the value quoted with Go's `%q` (so a newline in a value is `\n`, never a line
 * break). Throws `PodInfoError` naming the first bad line.
 */
export function parseDownwardApiFile(text: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new PodInfoError(`line ${i + 1}: expected key="value"`);
    const key = line.slice(0, eq);
    const quoted = line.slice(eq + 1);
    if (quoted.length < 2 || !quoted.startsWith('"') || !quoted.endsWith('"')) throw new PodInfoError(`line ${i + 1} (${key.slice(0, 100)}): the value is not a quoted string`);
    out[key] = unquoteGo(quoted.slice(1, -1), i + 1);
  }
  return out;
}

/** Undoes Go's strconv.Quote (the escapes `%q` can produce). */
function unquoteGo(body: string, line: number): string {
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '"') throw new PodInfoError(`line ${line}: unescaped quote inside the value`);
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = body[++i];
    const simple: Record<string, string> = { a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "\\": "\\", '"': '"', "'": "'" };
    if (e !== undefined && simple[e] !== undefined) {
      out += simple[e];
      continue;
    }
    const width = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (width > 0) {
      const hex = body.slice(i + 1, i + 1 + width);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== width) throw new PodInfoError(`line ${line}: bad \\${e} escape`);
      // \x is a raw byte in Go; the kubelet only emits it for invalid UTF-8, kept as that code unit.
      out += String.fromCodePoint(Number.parseInt(hex, 16));
      i += width;
      continue;
    }
    if (e !== undefined && /[0-7]/.test(e)) {
      const oct = body.slice(i, i + 3);
      if (!/^[0-7]{3}$/.test(oct)) throw new PodInfoError(`line ${line}: bad octal escape`);
      out += String.fromCharCode(Number.parseInt(oct, 8));
      i += 2;
      continue;
    }
    throw new PodInfoError(`line ${line}: unknown escape \\${e ?? ""}`);
  }
  return out;
}

/**
 * Reads the podinfo directory the way the kubelet lays it out (each file a symlink into the
 * `..data` directory it swaps atomically). A missing file is simply absent (the volume may not
 * project it); a file that exists but cannot be read or parsed is reported in `problems`.
 * `POD_NAME` / `POD_NAMESPACE` (Downward API env vars) win over the `name` / `namespace` files.
 */
export function readPodInfo(dir: string | undefined, env: NodeJS.ProcessEnv = process.env): PodInfo {
  const problems: string[] = [];
  const read = (file: string): string | undefined => {
    if (dir === undefined) return undefined;
    const p = path.join(dir, file);
    try {
      return readFileSync(p, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") problems.push(`cannot read ${p} (${code ?? "error"})`);
      return undefined;
    }
  };
  const parsed = (file: string): Record<string, string> | undefined => {
    const text = read(file);
    if (text === undefined) return undefined;
    try {
      return parseDownwardApiFile(text);
    } catch (error) {
      problems.push(`${path.join(dir!, file)}: ${(error as Error).message}`);
      return undefined;
    }
  };
  const plain = (file: string): string | undefined => {
    const value = read(file)?.trim();
    return value === "" ? undefined : value;
  };
  return {
    dir,
    name: nonEmpty(env.POD_NAME) ?? plain("name"),
    namespace: nonEmpty(env.POD_NAMESPACE) ?? plain("namespace"),
    labels: parsed("labels"),
    annotations: parsed("annotations"),
    problems,
  };
}

/**
 * The podinfo directory to use: the one given (which must exist: a typo must not silently turn
 * the Downward API off), else `/etc/podinfo` when it exists, else none.
 */
export function resolvePodInfoDir(podInfoDir: string | undefined): string | undefined {
  if (podInfoDir !== undefined) {
    if (typeof podInfoDir !== "string" || podInfoDir === "") throw new TypeError("podInfoDir must be a non-empty path");
    let isDir = false;
    try {
      isDir = statSync(podInfoDir).isDirectory();
    } catch {
      // reported below
    }
    if (!isDir) {
      throw new Error(
        `podInfoDir ${podInfoDir} does not exist or is not a directory: mount the Downward API volume there (deploy/k8s/base/worker/deployment.yaml, volume "podinfo"), or leave podInfoDir unset`,
      );
    }
    return path.resolve(podInfoDir);
  }
  return existsSync(DEFAULT_PODINFO_DIR) ? DEFAULT_PODINFO_DIR : undefined;
}

export interface DeploymentVersionOptions {
  /** The version set in code (e.g. from the build); wins over the pod label. */
  version?: string | undefined;
  /** Default `/etc/podinfo` when it exists. */
  podInfoDir?: string;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
}

/**
 * The `deploymentVersion` for `new AgentPool(...)` on Kubernetes: the version set in code when
 * there is one (a mismatch with the pod's `app.kubernetes.io/version` label is logged: the
 * manifests and the image disagree), else the label, else undefined (an untagged worker).
 * The pool fixes its version at construction, so this runs before the pool exists.
 */
export function kubernetesDeploymentVersion(options: DeploymentVersionOptions = {}): string | undefined {
  const logger = options.logger ?? stderrLogger;
  const dir = resolvePodInfoDir(options.podInfoDir);
  const info = readPodInfo(dir, options.env);
  for (const problem of info.problems) logger.warn({ problem }, "podinfo: a Downward API file could not be read");
  const label = nonEmpty(info.labels?.[VERSION_LABEL]);
  const code = nonEmpty(options.version);
  if (code !== undefined) {
    if (label !== undefined && label !== code.trim()) {
      logger.warn({ code_version: code, label_version: label, label: VERSION_LABEL }, "the version set in code differs from the pod's version label; the code's version is used");
    }
    return code;
  }
  return label;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}
