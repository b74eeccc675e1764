#!/usr/bin/env node
// The preStop hook of deploy/k8s: `POST /drain?wait=true` on this pod's control server, blocking
// until the worker holds no call, so the SIGTERM the kubelet sends next finds nothing live.
// A Kubernetes `httpGet` hook cannot POST, hence this exec command:
//   lifecycle: { preStop: { exec: { command: ["openrtc-prestop"] } } }
// It reads OPENRTC_DRAIN_TOKEN and OPENRTC_PORT (the container's env) and, optionally,
// OPENRTC_PRESTOP_URL. node:http rather than fetch: undici gives up on a response after 300 s,
// and a drain lasts as long as the longest call (the kubelet bounds it by the grace period).
import { request } from "node:http";
import { isMainModule } from "@openrtc/core";

export interface PreStopResult {
  code: number;
  message: string;
}

/** Runs the hook; resolves with the exit code and a line for the kubelet's event log. */
export function preStop(env: NodeJS.ProcessEnv = process.env): Promise<PreStopResult> {
  const base = env.OPENRTC_PRESTOP_URL ?? `http://127.0.0.1:${env.OPENRTC_PORT ?? "8081"}`;
  const url = new URL("/drain?wait=true", base);
  const body = JSON.stringify({ actor: "kubernetes", reason: "preStop hook" });
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
  if (env.OPENRTC_DRAIN_TOKEN) headers.authorization = `Bearer ${env.OPENRTC_DRAIN_TOKEN}`;
  return new Promise((resolve) => {
    const req = request(url, { method: "POST", headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        if (res.statusCode === 200) resolve({ code: 0, message: `drained: ${text.trim()}` });
        else resolve({ code: 1, message: `POST ${url.pathname}${url.search} answered ${res.statusCode ?? "?"}: ${text.trim().slice(0, 500)}` });
      });
      res.on("error", (error) => resolve({ code: 1, message: `reading the drain answer failed: ${error.message}` }));
    });
    req.on("error", (error: NodeJS.ErrnoException) => {
      // Nothing listening: the worker is gone (or never started), so nothing is live to wait for.
      if (error.code === "ECONNREFUSED") resolve({ code: 0, message: `no control server at ${url.origin}; nothing to drain` });
      else resolve({ code: 1, message: `POST ${url.href} failed: ${error.message}` });
    });
    req.end(body);
  });
}

if (isMainModule(import.meta.url)) {
  const { code, message } = await preStop();
  (code === 0 ? process.stdout : process.stderr).write(`openrtc-prestop: ${message}\n`);
  process.exitCode = code;
}
