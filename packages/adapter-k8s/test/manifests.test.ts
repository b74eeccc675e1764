// deploy/k8s, validated offline: `kubectl kustomize` builds the base and every overlay, every object
// validates against the Kubernetes schemas (kubernetes-models), and the Deployments carry what the
// adapter relies on (probes, preStop, Downward API and manifest volumes, the sizing rule).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { parseAllDocuments } from "yaml";
import { ConfigMap, Secret, ServiceAccount } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { Role, RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1";

const root = fileURLToPath(new URL("../../../deploy/k8s/", import.meta.url));
const cli = fileURLToPath(new URL("../../core/src/cli.ts", import.meta.url));
const builds = ["base", "overlays/blue", "overlays/blue-green", "overlays/green"];

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: unknown };

const models: Record<string, new (data: never) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/ServiceAccount": ServiceAccount,
  "apps/v1/Deployment": Deployment,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
};

function build(dir: string): K8sObject[] {
  const out = execFileSync("kubectl", ["kustomize", `${root}${dir}`], { encoding: "utf8" });
  return parseAllDocuments(out).map((d) => d.toJSON() as K8sObject);
}

function validate(object: K8sObject): void {
  const Model = models[`${object.apiVersion}/${object.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${object.apiVersion} ${object.kind}: add it to the test`);
  new Model(object as never).validate();
}

type Container = {
  env: { name: string }[];
  ports: { name: string; containerPort: number }[];
  readinessProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
  startupProbe: { httpGet: { path: string } };
  lifecycle: { preStop: { exec: { command: string[] } } };
  volumeMounts: { name: string; mountPath: string }[];
  image: string;
};
type Pod = { terminationGracePeriodSeconds: number; containers: Container[]; volumes: { name: string; downwardAPI?: { items: { path: string; fieldRef: { fieldPath: string } }[] }; configMap?: { name: string } }[] };

describe.each(builds)("kubectl kustomize deploy/k8s/%s", (dir) => {
  const objects = build(dir);

  test("every object validates against the Kubernetes schemas", () => {
    expect(objects.length).toBeGreaterThan(0);
    for (const object of objects) expect(() => validate(object), `${object.kind}/${object.metadata.name}`).not.toThrow();
  });

  test("each Deployment: probes, preStop drain, podinfo and manifest volumes, grace period from the sizing rule, version label = image tag", () => {
    const deployments = objects.filter((o) => o.kind === "Deployment");
    expect(deployments.length).toBe(dir === "overlays/blue-green" ? 2 : 1);
    for (const d of deployments) {
      const template = (d.spec as { template: { metadata: { labels: Record<string, string> }; spec: Pod } }).template;
      const pod = template.spec;
      const c = pod.containers[0]!;
      expect(c.livenessProbe.httpGet).toEqual({ path: "/livez", port: "control" });
      expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "control" });
      expect(c.startupProbe.httpGet.path).toBe("/livez");
      expect(c.ports).toContainEqual(expect.objectContaining({ name: "control", containerPort: 8081 }));
      expect(c.lifecycle.preStop.exec.command.join(" ")).toMatch(/openrtc-prestop/);
      expect(c.env.map((e) => e.name)).toEqual(expect.arrayContaining(["OPENRTC_DRAIN_TOKEN", "OPENRTC_MANIFEST_SECRETS", "POD_NAME", "POD_NAMESPACE", "OPENRTC_PORT"]));
      // longest call 3600 s + shutdownDelay 5 s + margin >= 55 s
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(3600 + 5 + 55);
      const podinfo = pod.volumes.find((v) => v.name === "podinfo")!.downwardAPI!.items.map((i) => [i.path, i.fieldRef.fieldPath]);
      expect(podinfo).toEqual(expect.arrayContaining([["labels", "metadata.labels"], ["annotations", "metadata.annotations"], ["name", "metadata.name"], ["namespace", "metadata.namespace"]]));
      expect(pod.volumes.find((v) => v.name === "manifest")!.configMap!.name).toBe("openrtc-manifest");
      expect(c.volumeMounts.map((m) => m.mountPath)).toEqual(expect.arrayContaining(["/etc/podinfo", "/etc/openrtc/manifest"]));
      const version = template.metadata.labels["app.kubernetes.io/version"];
      if (dir !== "base") expect(c.image.endsWith(`:${version}`)).toBe(true);
    }
  });

  test("a PodDisruptionBudget per Deployment selects exactly its pods; the shared objects appear once", () => {
    const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget");
    const deployments = objects.filter((o) => o.kind === "Deployment");
    expect(pdbs.length).toBe(deployments.length);
    for (const d of deployments) {
      const match = (d.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      expect(pdbs.some((p) => JSON.stringify((p.spec as { selector: { matchLabels: unknown } }).selector.matchLabels) === JSON.stringify(match))).toBe(true);
    }
    const names = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(expect.arrayContaining(["Secret/openrtc-secrets", "ConfigMap/openrtc-manifest", "ServiceAccount/openrtc-worker", "Role/openrtc-manifest-reader", "RoleBinding/openrtc-manifest-reader"]));
  });
});

describe("the validator itself", () => {
  test("catches a wrong field type and a missing required field (so a passing build means something)", () => {
    const [d] = build("overlays/blue").filter((o) => o.kind === "Deployment");
    const broken = structuredClone(d!) as K8sObject & { spec: { replicas: unknown } };
    broken.spec.replicas = "two";
    expect(() => validate(broken)).toThrow();
    const nameless = structuredClone(d!) as K8sObject & { spec: { template: { spec: { containers: { name?: string }[] } } } };
    delete nameless.spec.template.spec.containers[0]!.name;
    expect(() => validate(nameless)).toThrow();
  });

  test("`openrtc manifest sign --configmap` prints a ConfigMap that validates and kubectl accepts", () => {
    // The real CLI, as a process (the `openrtc` bin of @openrtc/core, run from source).
    const out = execFileSync(process.execPath, ["--conditions=@openrtc/source", "--import", "tsx", cli, "manifest", "sign", "--versions", "v2.0.0", "--seq", "2", "--secret-env", "S", "--configmap", "openrtc-manifest", "--namespace", "voice"], {
      encoding: "utf8",
      env: { ...process.env, S: "a-signing-secret-0123456789" },
    });
    const [cm] = parseAllDocuments(out).map((d) => d.toJSON() as K8sObject & { data: Record<string, string> });
    validate(cm!);
    expect(JSON.parse(cm!.data["manifest.json"]!)).toMatchObject({ seq: 2, active_versions: ["v2.0.0"] });
    // kubectl reads it too: a kustomization holding just this file builds (offline).
    const dir = mkdtempSync(path.join(tmpdir(), "openrtc-cm-"));
    try {
      writeFileSync(path.join(dir, "cm.yaml"), out);
      writeFileSync(path.join(dir, "kustomization.yaml"), "resources:\n  - cm.yaml\n");
      const built = parseAllDocuments(execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8" })).map((x) => x.toJSON() as K8sObject & { data: Record<string, string> });
      expect(built[0]).toMatchObject({ kind: "ConfigMap", metadata: { name: "openrtc-manifest", namespace: "voice" } });
      expect(built[0]!.data["manifest.json"]).toBe(cm!.data["manifest.json"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
