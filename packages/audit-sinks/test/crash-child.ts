/**
 * Child process of the crash trials (crash-trials.test.ts): an AuditLog writing through the
 * file sink as fast as it can. After each flush that every sink acknowledged it prints
 * `ack <seq>`; the parent kills it with SIGKILL and checks that every acknowledged record
 * survived. Argument: JSON `{ path, mode, seed, maxBytes }`.
 *
 * Modes: `plain` (Node's fs), `chunked` (each write split into small pieces with an event-loop
 * turn between them, so a kill can land inside a line), `pause` (chunked, and after a piece
 * that ends mid-line it prints `paused` and stops writing: the kill surely tears a line).
 * With `resume`, the AuditLog continues the chain of the file's last record (`resumeFrom`), so
 * one chain runs through every crash; without it each run starts its own origin.
 */
import { AuditLog } from "@openrtc/core/audit";
import { fileSink, nodeFileIo } from "@openrtc/audit-sinks/file";
import type { AuditFileHandle, AuditFileIo } from "@openrtc/audit-sinks/file";

interface ChildArgs {
  path: string;
  mode: "plain" | "chunked" | "pause";
  seed: number;
  maxBytes: number;
  resume: boolean;
}

const args = JSON.parse(process.argv[2] ?? "{}") as ChildArgs;
let state = args.seed >>> 0 || 1;
const random = (): number => {
  // xorshift32: reproducible from the trial's seed
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 4294967296;
};

const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

function chunkedIo(pauseAfterPieces: number | undefined): AuditFileIo {
  let pieces = 0;
  const wrap = (inner: AuditFileHandle): AuditFileHandle => ({
    ...inner,
    read: (into, position) => inner.read(into, position),
    datasync: () => inner.datasync(),
    truncate: (length) => inner.truncate(length),
    size: () => inner.size(),
    chmod: (mode) => inner.chmod(mode),
    close: () => inner.close(),
    async write(data, position) {
      await new Promise((resolve) => setImmediate(resolve));
      const n = Math.min(data.byteLength, 1 + Math.floor(random() * 96));
      const written = await inner.write(data.subarray(0, n), position);
      pieces += 1;
      if (pauseAfterPieces !== undefined && pieces >= pauseAfterPieces && data[written - 1] !== 10) {
        print("paused");
        await new Promise(() => undefined); // never resumes: the parent kills us here
      }
      return written;
    },
  });
  return {
    ...nodeFileIo,
    open: async (path, options) => wrap(await nodeFileIo.open(path, options)),
  };
}

const io =
  args.mode === "plain"
    ? nodeFileIo
    : chunkedIo(args.mode === "pause" ? 20 + Math.floor(random() * 400) : undefined);
const sink = fileSink({ path: args.path, io, rotate: { maxBytes: args.maxBytes }, onWarning: () => undefined });
const { lastRecord } = await sink.open();
const log = new AuditLog({
  sinks: [sink],
  maxBatch: 1 + Math.floor(random() * 300),
  ...(args.resume && lastRecord !== undefined ? { resumeFrom: lastRecord } : { origin: `crash-${args.mode}-${args.seed}` }),
});
print(`origin ${log.origin}`);

// Up to three flushes in flight: load stays high while the queue never overflows (an
// overflow would drop records, and a flush with drops is never acknowledged).
const inFlight: Array<Promise<void>> = [];
for (;;) {
  const burst = 1 + Math.floor(random() * 200);
  for (let i = 0; i < burst; i++) {
    log.emit("worker.rejected", { actor: "crash-test", target: `job-${log.seq + 1}`, reason: "draining", n: i });
  }
  const target = log.seq;
  inFlight.push(
    log.flush().then((result) => {
      if (result.ok) print(`ack ${target}`);
    }),
  );
  if (inFlight.length >= 3) await inFlight.shift();
  await new Promise((resolve) => setImmediate(resolve));
}
