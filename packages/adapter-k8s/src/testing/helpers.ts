import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach } from "vitest";
import { signManifest, type AuditRecord, type AuditSink, type Logger } from "@openrtc/core";

/** A fresh temp directory per test, removed afterwards. */
export function useTempDir(prefix = "openrtc-k8s-"): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(path.join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}

export const SECRET = "manifest-secret-0123456789abcdef";
export const TOKEN = "drain-token-0123456789abcdef";

export function manifestJson(seq: number, versions: string[], secret = SECRET): string {
  const now = Date.now() / 1000;
  return JSON.stringify(signManifest({ seq, activeVersions: versions, issuedAt: now, expiresAt: now + 3600, secret }));
}

/** An audit sink that keeps records in memory. */
export function memorySink(): AuditSink & { records: AuditRecord[] } {
  const records: AuditRecord[] = [];
  return {
    name: "memory",
    records,
    write(batch) {
      records.push(...batch);
      return Promise.resolve();
    },
  };
}

/** A logger that keeps messages, for asserting what an operator is told. */
export function memoryLogger(): Logger & { lines: { level: string; message: string; fields: object }[]; text(): string } {
  const lines: { level: string; message: string; fields: object }[] = [];
  const at = (level: string) => (fields: object, message: string) => void lines.push({ level, message, fields });
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), text: () => lines.map((l) => `${l.level} ${l.message} ${JSON.stringify(l.fields)}`).join("\n") };
}

/** Polls `fn` until it returns a truthy value (bounded); for state that changes asynchronously. */
export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
