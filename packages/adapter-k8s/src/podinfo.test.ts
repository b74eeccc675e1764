import { chmodSync } from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { kubernetesDeploymentVersion, parseDownwardApiFile, PodInfoError, readPodInfo } from "./podinfo.ts";
import { writePodInfo, writeProjectedVolume } from "./testing/kubelet.ts";
import { memoryLogger, useTempDir } from "./testing/helpers.ts";

const tempDir = useTempDir();

describe("parseDownwardApiFile", () => {
  test("reads the kubelet's key=\"value\" lines, Go escapes included", () => {
    const text = 'app.kubernetes.io/version="v2.0.0"\nnote="a \\"quoted\\" word\\nsecond line\\t\\u00e9\\x41\\101"\nempty=""\n';
    expect(parseDownwardApiFile(text)).toEqual({ "app.kubernetes.io/version": "v2.0.0", note: 'a "quoted" word\nsecond line\té' + "AA", empty: "" });
  });

  test.each([
    ["no equals sign", "justakey"],
    ["an unquoted value", "k=v"],
    ["an unterminated value", 'k="v'],
    ["an unknown escape", 'k="\\q"'],
    ["a bad hex escape", 'k="\\xZZ"'],
    ["a bare quote inside", 'k="a"b"'],
  ])("rejects %s with the line number", (_what, text) => {
    expect(() => parseDownwardApiFile(`ok="1"\n${text}`)).toThrow(PodInfoError);
    expect(() => parseDownwardApiFile(`ok="1"\n${text}`)).toThrow(/line 2/);
  });
});

describe("readPodInfo", () => {
  test("reads name, namespace, labels, annotations through the ..data symlinks; env vars win", () => {
    const dir = tempDir();
    writePodInfo(dir, { name: "pod-a\n", namespace: "ns-a", labels: { app: "w" }, annotations: { "openrtc.io/drain": "true" } });
    expect(readPodInfo(dir, {})).toMatchObject({ name: "pod-a", namespace: "ns-a", labels: { app: "w" }, annotations: { "openrtc.io/drain": "true" }, problems: [] });
    expect(readPodInfo(dir, { POD_NAME: "from-env", POD_NAMESPACE: "env-ns" })).toMatchObject({ name: "from-env", namespace: "env-ns" });
  });

  test("absent files are absent; unreadable or unparsable ones are problems, never fatal", () => {
    const dir = tempDir();
    writeProjectedVolume(dir, { labels: "garbage", annotations: 'a="1"' });
    const info = readPodInfo(dir, {});
    expect(info.name).toBeUndefined();
    expect(info.labels).toBeUndefined();
    expect(info.annotations).toEqual({ a: "1" });
    expect(info.problems.join()).toMatch(/labels: line 1/);
    if (process.getuid?.() !== 0) {
      chmodSync(path.join(dir, "..data", "annotations"), 0);
      expect(readPodInfo(dir, {}).problems.join()).toMatch(/EACCES/);
    }
  });
});

describe("kubernetesDeploymentVersion", () => {
  test("the label when code sets none; code wins and a mismatch is logged", () => {
    const dir = tempDir();
    writePodInfo(dir, { labels: { "app.kubernetes.io/version": "v2.0.0" } });
    const logger = memoryLogger();
    expect(kubernetesDeploymentVersion({ podInfoDir: dir, logger })).toBe("v2.0.0");
    expect(kubernetesDeploymentVersion({ podInfoDir: dir, version: "v2.0.0", logger })).toBe("v2.0.0");
    expect(logger.lines).toHaveLength(0);
    expect(kubernetesDeploymentVersion({ podInfoDir: dir, version: "v3.0.0", logger })).toBe("v3.0.0");
    expect(logger.text()).toMatch(/differs from the pod's version label/);
  });

  test("no podinfo: the code's version or undefined; a named dir that is missing is an error", () => {
    expect(kubernetesDeploymentVersion({ version: "v1" })).toBe("v1");
    expect(() => kubernetesDeploymentVersion({ podInfoDir: path.join(tempDir(), "nope") })).toThrow(/Downward API volume/);
  });
});
