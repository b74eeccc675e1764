import { parseArgs } from "node:util";
import { EXIT_OK, UsageError } from "./cli-command.ts";
import type { CliCommand, CliIo } from "./cli-command.ts";
import { signManifest } from "./manifest.ts";

const MANIFEST_USAGE = `Usage: openrtc manifest sign --versions V[,V...] --seq N --secret-env NAME
                             [--expires-in DURATION] [--configmap NAME [--namespace NS] [--key KEY]]

Signs an active-version manifest (the versions that may take new calls). The secret is read from
the environment variable NAME, never from the command line (shell history, ps). Without
--configmap it prints the manifest JSON; with it, a ConfigMap to \`kubectl apply -f -\` (the one
deploy/k8s mounts at /etc/openrtc/manifest). Every new manifest needs a higher --seq: workers
refuse an older or conflicting one.

  --versions     comma-separated deployment versions, e.g. v2.0.0 (empty: no version is active)
  --seq          the manifest's sequence number, a non-negative integer
  --secret-env   the environment variable holding the signing secret
  --expires-in   lifetime, e.g. 90m, 24h, 7d (default 7d); workers stop counting it afterwards
  --configmap    print a ConfigMap of this name holding the manifest
  --namespace    the ConfigMap's namespace (default: none, kubectl's current one)
  --key          the ConfigMap data key (default manifest.json)
`;

/** `90s`, `90m`, `24h`, `7d` → seconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text.trim());
  if (match === null) throw new UsageError(`--expires-in must look like 90m, 24h or 7d, got ${JSON.stringify(text)}`);
  const seconds = Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "s" | "m" | "h" | "d"];
  if (!(seconds > 0)) throw new UsageError("--expires-in must be positive");
  return seconds;
}

// Kubernetes object names: DNS-1123 subdomain (ConfigMap) and label (namespace); keys per ConfigMap rules.
const NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const KEY_RE = /^[-._a-zA-Z0-9]{1,253}$/;

async function runManifest(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    (sub === undefined ? io.stderr : io.stdout)(MANIFEST_USAGE);
    return sub === undefined ? 2 : EXIT_OK;
  }
  if (sub !== "sign") throw new UsageError(`unknown subcommand "${sub}"\n\n${MANIFEST_USAGE}`);
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        versions: { type: "string" },
        seq: { type: "string" },
        "secret-env": { type: "string" },
        "expires-in": { type: "string" },
        configmap: { type: "string" },
        namespace: { type: "string" },
        key: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${MANIFEST_USAGE}`);
  }
  if (values.help === true) {
    io.stdout(MANIFEST_USAGE);
    return EXIT_OK;
  }
  if (values.versions === undefined) throw new UsageError("--versions is required (comma-separated; pass --versions= for none)");
  if (values.seq === undefined || !/^\d+$/.test(values.seq) || !Number.isSafeInteger(Number(values.seq))) throw new UsageError("--seq must be a non-negative integer");
  const secretEnv = values["secret-env"];
  if (secretEnv === undefined || secretEnv === "") throw new UsageError("--secret-env NAME is required (the variable holding the signing secret)");
  const secret = io.env[secretEnv];
  if (secret === undefined || secret === "") throw new UsageError(`the environment variable ${secretEnv} is not set or empty`);
  const versions = values.versions
    .split(",")
    .map((v) => v.trim())
    .filter((v) => v !== "");
  const lifetime = values["expires-in"] === undefined ? 7 * 86400 : parseDuration(values["expires-in"]);
  const issuedAt = Math.floor(Date.now() / 1000);
  let manifest;
  try {
    manifest = signManifest({ seq: Number(values.seq), activeVersions: versions, issuedAt, expiresAt: issuedAt + lifetime, secret });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const json = JSON.stringify(manifest);
  if (values.configmap === undefined) {
    if (values.namespace !== undefined || values.key !== undefined) throw new UsageError("--namespace and --key go with --configmap");
    io.stdout(`${json}\n`);
    return EXIT_OK;
  }
  const key = values.key ?? "manifest.json";
  if (!NAME_RE.test(values.configmap)) throw new UsageError(`--configmap: ${JSON.stringify(values.configmap)} is not a valid Kubernetes name`);
  if (values.namespace !== undefined && !NAMESPACE_RE.test(values.namespace)) throw new UsageError(`--namespace: ${JSON.stringify(values.namespace)} is not a valid namespace`);
  if (!KEY_RE.test(key)) throw new UsageError(`--key: ${JSON.stringify(key)} is not a valid ConfigMap key`);
  // JSON strings are valid YAML double-quoted scalars, so the manifest goes in byte for byte.
  const lines = [
    "apiVersion: v1",
    "kind: ConfigMap",
    "metadata:",
    `  name: ${values.configmap}`,
    ...(values.namespace === undefined ? [] : [`  namespace: ${values.namespace}`]),
    "  labels:",
    "    app.kubernetes.io/part-of: openrtc",
    "  annotations:",
    `    openrtc.io/manifest-seq: "${manifest.seq}"`,
    `    openrtc.io/active-versions: ${JSON.stringify(versions.join(","))}`,
    "data:",
    `  ${key}: ${JSON.stringify(json)}`,
  ];
  io.stdout(`${lines.join("\n")}\n`);
  return EXIT_OK;
}

export const manifestCommand: CliCommand = { summary: "sign an active-version manifest (JSON or a ConfigMap to kubectl apply)", usage: MANIFEST_USAGE, run: runManifest };
