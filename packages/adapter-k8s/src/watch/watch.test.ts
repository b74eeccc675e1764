// The /watch source against a local HTTP server speaking the Kubernetes API's list and watch JSON
// (no kube-apiserver runs here): list, watch from the list's resourceVersion, resume from the last
// one seen when a watch ends, re-list on 410 Gone, retry on a failing list.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { afterEach, describe, expect, test } from "vitest";
import { KubeConfig } from "@kubernetes/client-node";
import { AgentPool, ManifestGate, silentLogger } from "@openrtc/core";
import { configMapManifest, type ConfigMapWatchEvent } from "./index.ts";
import { manifestJson, memorySink, SECRET, until } from "../testing/helpers.ts";

interface Request {
  kind: "list" | "watch";
  resourceVersion: string | null;
  fieldSelector: string | null;
}

/** A fake API server; `onList`/`onWatch` script its answers. */
async function fakeApi(handlers: { onList(n: number, res: ServerResponse): void; onWatch(n: number, req: Request, res: ServerResponse): void }) {
  const requests: Request[] = [];
  let lists = 0;
  let watches = 0;
  const open = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== "/api/v1/namespaces/voice/configmaps") {
      res.writeHead(404).end();
      return;
    }
    const r: Request = { kind: url.searchParams.get("watch") === "true" ? "watch" : "list", resourceVersion: url.searchParams.get("resourceVersion"), fieldSelector: url.searchParams.get("fieldSelector") };
    requests.push(r);
    if (r.kind === "list") handlers.onList(++lists, res);
    else {
      open.add(res);
      res.on("close", () => open.delete(res));
      handlers.onWatch(++watches, r, res);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server: `http://127.0.0.1:${(server.address() as { port: number }).port}`, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "c", cluster: "fake", user: "u" }],
    currentContext: "c",
  });
  return {
    kc,
    requests,
    close: () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const configMap = (rv: string, manifest: string | undefined) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "openrtc-manifest", namespace: "voice", resourceVersion: rv },
  data: manifest === undefined ? {} : { "manifest.json": manifest },
});
const list = (rv: string, items: unknown[]) => JSON.stringify({ apiVersion: "v1", kind: "ConfigMapList", metadata: { resourceVersion: rv }, items });
const line = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("configMapManifest", () => {
  test("lists, watches from the list's resourceVersion, resumes from the last one seen, re-lists on 410 Gone", async () => {
    const events: ConfigMapWatchEvent[] = [];
    const api = await fakeApi({
      onList: (n, res) => {
        res.setHeader("content-type", "application/json");
        if (n === 1) res.end(list("100", [configMap("100", manifestJson(1, ["v1.0.0"]))]));
        else res.end(list("300", [configMap("300", manifestJson(4, ["v1.0.0", "v2.0.0"]))]));
      },
      onWatch: (n, _req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        if (n === 1) {
          // One change, a bookmark, then the server ends the watch (its timeout).
          res.write(line("MODIFIED", configMap("101", manifestJson(2, ["v2.0.0"]))));
          res.write(line("BOOKMARK", { kind: "ConfigMap", apiVersion: "v1", metadata: { resourceVersion: "150" } }));
          setTimeout(() => res.end(), 50);
        } else if (n === 2) {
          // Our resourceVersion was compacted away.
          res.write(line("ERROR", { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Expired", code: 410, message: "too old resource version: 150 (250)" }));
          setTimeout(() => res.end(), 50);
        }
        // n >= 3: stay open.
      },
    });
    cleanups.push(api.close);
    const sink = memorySink();
    const gate = new ManifestGate({ secrets: [SECRET], logger: silentLogger });
    const pool = new AgentPool({ deploymentVersion: "v2.0.0", membership: gate, auditSinks: [sink] });
    gate.attach(configMapManifest({ name: "openrtc-manifest", namespace: "voice", kubeConfig: api.kc, retryDelayMs: 20, onEvent: (e) => events.push(e) }));
    cleanups.push(() => gate.close());
    await until(() => gate.current?.seq === 4, "seq 4 after the re-list", 20_000);
    expect(pool.member).toBe(true);
    await until(() => api.requests.length >= 5, "the watch after the re-list");
    expect(api.requests.map((r) => [r.kind, r.resourceVersion])).toEqual([
      ["list", null],
      ["watch", "100"],
      ["watch", "150"],
      ["list", null],
      ["watch", "300"],
    ]);
    expect(api.requests.every((r) => r.fieldSelector === "metadata.name=openrtc-manifest")).toBe(true);
    expect(events.map((e) => e.type)).toEqual(["listed", "watching", "changed", "watching", "gone", "listed", "watching"]);
  });

  test("a failing list is retried; a deleted ConfigMap or a forged manifest keeps the current one (and is recorded)", async () => {
    const api = await fakeApi({
      onList: (n, res) => {
        if (n === 1) {
          res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", code: 500 }));
          return;
        }
        res.setHeader("content-type", "application/json");
        res.end(list("10", [configMap("10", manifestJson(1, ["v2.0.0"]))]));
      },
      onWatch: (_n, _req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write(line("MODIFIED", configMap("11", manifestJson(2, [], "forged-secret-0123456789abcdef"))));
        res.write(line("DELETED", configMap("12", undefined)));
      },
    });
    cleanups.push(api.close);
    const sink = memorySink();
    const gate = new ManifestGate({ secrets: [SECRET], logger: silentLogger });
    const pool = new AgentPool({ deploymentVersion: "v2.0.0", membership: gate, auditSinks: [sink] });
    gate.attach(configMapManifest({ name: "openrtc-manifest", namespace: "voice", kubeConfig: api.kc, retryDelayMs: 20 }));
    cleanups.push(() => gate.close());
    await until(() => sink.records.filter((r) => r.event === "worker.manifest_rejected").length >= 2, "two rejections");
    expect(gate.current?.seq).toBe(1);
    expect(pool.member).toBe(true);
    expect(sink.records.filter((r) => r.event === "worker.manifest_rejected").map((r) => r.reason)).toEqual(["bad_signature", "unreadable"]);
    expect(api.requests.filter((r) => r.kind === "list").length).toBe(2);
  });

  test("a ConfigMap without the key, or none at all, is unreadable", async () => {
    const api = await fakeApi({
      onList: (_n, res) => {
        res.setHeader("content-type", "application/json");
        res.end(list("5", []));
      },
      onWatch: (_n, _req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write(line("ADDED", configMap("6", undefined)));
      },
    });
    cleanups.push(api.close);
    const reasons: string[] = [];
    const gate = new ManifestGate({ secrets: [SECRET], logger: silentLogger, onRejected: (r) => reasons.push(r.reason) });
    gate.attach(configMapManifest({ name: "openrtc-manifest", namespace: "voice", kubeConfig: api.kc }));
    cleanups.push(() => gate.close());
    await until(() => reasons.length >= 2, "two unreadable reports");
    expect(reasons[0]).toMatch(/not found/);
    expect(reasons[1]).toMatch(/no key manifest.json/);
    expect(() => configMapManifest({ name: "" })).toThrow(/name/);
  });
});
