// Child for trust.test.ts: emits records and leaves without closing the log.
//   exit   — process.exit(0) right after emitting (no event-loop turn for delivery)
//   throw  — an uncaught exception right after emitting
//   rotate — writes enough to rotate twice, then closes (for the syscall trace)
import { AuditLog } from "@openrtc/core/audit";
import { fileSink } from "../src/file/index.ts";

const [path, mode] = process.argv.slice(2) as [string, string];
const sink = fileSink({ path, ...(mode === "rotate" ? { rotate: { maxBytes: 600 } } : {}), onWarning: () => {} });
await sink.open();
const log = new AuditLog({ origin: "child", sinks: [sink] });
if (mode === "rotate") {
  for (let i = 0; i < 6; i++) {
    log.emit("x", { i, pad: "p".repeat(200) });
    await log.flush();
  }
  await log.close();
} else {
  for (let i = 0; i < 3; i++) log.emit("worker.exited", { i });
  if (mode === "exit") process.exit(0);
  throw new Error("boom");
}
