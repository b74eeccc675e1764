import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { s3Sink } from "../src/s3/index.ts";
import { BUCKET, clientConfig, collectLines, fakeRecords, freePort, startS3, tempDir } from "./s3-helpers.ts";

const childScript = fileURLToPath(new URL("./s3-spool-child.ts", import.meta.url));
const tsxLoader = pathToFileURL(join(dirname(createRequire(import.meta.url).resolve("tsx/package.json")), "dist/esm/index.mjs"));

let spool: Awaited<ReturnType<typeof tempDir>>;
const cleanups: (() => Promise<unknown>)[] = [];
beforeEach(async () => {
  spool = await tempDir("s3-restart");
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await spool.remove();
});

/** Runs the child until it printed `until` (a line), then SIGKILLs it. Returns the last acknowledged seq. */
async function runAndKill(args: object, until: (line: string) => boolean): Promise<{ lastAck: number; pid: number }> {
  const child = spawn(process.execPath, ["--import", tsxLoader.href, "--conditions=@openrtc/source", childScript, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let lastAck = 0;
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on("exit", (code, signal) => resolve(signal ?? code)));
  await new Promise<void>((resolve, reject) => {
    let buffered = "";
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        const ack = /^ack (\d+)$/.exec(line);
        if (ack) lastAck = Number(ack[1]);
        if (until(line)) {
          child.kill("SIGKILL");
          resolve();
        }
      }
    });
    void exited.then((how) => reject(new Error(`child exited (${String(how)}) before the kill: ${stderr}`)));
  });
  expect(await exited).toBe("SIGKILL");
  return { lastAck, pid: child.pid! };
}

async function deliverWithNewSink(port: number) {
  const sink = await s3Sink({ bucket: BUCKET, prefix: "audit/prod", spoolDir: spool.path, clientConfig: clientConfig(port) });
  const before = sink.stats();
  await sink.flush();
  await sink.close();
  return before;
}

describe("s3Sink across a process crash", () => {
  it("a new sink on the spoolDir of a killed process (S3 was down) delivers its whole spool", async () => {
    const port = await freePort();
    const { lastAck, pid } = await runAndKill({ spoolDir: spool.path, port, total: 200, batch: 20, maxRecords: 50 }, (line) => line === "done");
    expect(lastAck).toBe(200);
    // The dead process still "holds" the directory; the new sink takes it over.
    expect(JSON.parse(await readFile(join(spool.path, "spool.lock"), "utf8"))).toMatchObject({ pid });

    const s3 = await startS3(port);
    cleanups.push(() => s3.stop());
    const inherited = await deliverWithNewSink(port);
    expect(inherited.spooledRecords).toBe(200);
    expect(await collectLines(port, "audit/prod")).toEqual(fakeRecords(1, 200).map((r) => JSON.stringify(r)));
  });

  it("killed while uploading: every acknowledged record reaches S3 exactly once, in order", async () => {
    const s3 = await startS3();
    cleanups.push(() => s3.stop());
    // Small objects, so the kill lands among many announce → PutObject → advance steps.
    let uploaded = 0;
    const { lastAck } = await runAndKill({ spoolDir: spool.path, port: s3.port, total: 5_000, batch: 10, maxRecords: 7 }, (line) => {
      uploaded = Number(/^uploaded (\d+)$/.exec(line)?.[1] ?? uploaded);
      return uploaded >= 20 && line.startsWith("ack ");
    });
    const inherited = await deliverWithNewSink(s3.port);
    const delivered = await collectLines(s3.port, "audit/prod");
    // The killed process had uploaded part of it; the new sink the rest.
    expect(inherited.spooledRecords).toBeLessThan(delivered.length);
    // Written but not yet acknowledged records may be there too: a prefix of the stream, no repeats.
    expect(delivered.length).toBeGreaterThanOrEqual(lastAck);
    expect(delivered).toEqual(fakeRecords(1, delivered.length).map((r) => JSON.stringify(r)));
  });
});
