// Extension pacing: how early each EXTEND_TIMEOUT_USEC= is sent before the previous extension
// runs out, measured at a real notify socket (python3 receiver, CLOCK_MONOTONIC) from a real
// worker process draining with a call held. Timing depends on the machine: not part of the tests.
//   pnpm --filter @openrtc/adapter-systemd bench
import { Receiver, Worker } from "../test/harness.ts";

const HOLD_MS = Number(process.env.HOLD_MS ?? 8000);

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `min ${sorted[0]!.toFixed(1)} / median ${at(0.5).toFixed(1)} / max ${sorted.at(-1)!.toFixed(1)} ms`;
}

async function measure(extendByMs: number, stallMs: number): Promise<void> {
  const receiver = new Receiver(`@openrtc-bench/${process.pid}/${extendByMs}/${stallMs}`);
  await receiver.bound();
  const worker = new Worker({ NOTIFY_SOCKET: receiver.address, EXTEND_BY_MS: String(extendByMs), READY_AT_START: "1" });
  try {
    await receiver.waitFor("READY", "1");
    await worker.command("start held", "STARTED held");
    const sigtermAt = process.hrtime.bigint();
    worker.child.kill("SIGTERM");
    const stopping = await receiver.waitFor("STOPPING", "1");
    const firstLatencyMs = Number(process.hrtime.bigint() - sigtermAt) / 1e6;
    if (stallMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, HOLD_MS / 2));
      await worker.command(`stall ${stallMs}`, "OK stall");
    }
    await new Promise((resolve) => setTimeout(resolve, stallMs > 0 ? HOLD_MS / 2 : HOLD_MS));
    await worker.command("end held", "ENDED held");
    await worker.exited;
    const extensions = receiver.with("EXTEND_TIMEOUT_USEC").map((d) => ({ ms: d.ms, ask: Number(d.fields.get("EXTEND_TIMEOUT_USEC")) / 1000 }));
    const leads = extensions.slice(1).map((e, i) => extensions[i]!.ms + extensions[i]!.ask - e.ms);
    const intervals = extensions.slice(1).map((e, i) => e.ms - extensions[i]!.ms);
    console.log(
      `extendByMs ${extendByMs}${stallMs > 0 ? `, one ${stallMs} ms event-loop stall` : ""}: ${extensions.length} extensions over ${(HOLD_MS / 1000).toFixed(0)} s held\n` +
        `  SIGTERM → STOPPING=1+first EXTEND received: ${firstLatencyMs.toFixed(1)} ms (first asks ${extensions[0]!.ask} ms; STOPPING datagram ${stopping.fields.has("EXTEND_TIMEOUT_USEC") ? "carries" : "lacks"} it)\n` +
        `  interval between extensions: ${stats(intervals)} (target ${(extendByMs / 3).toFixed(0)})\n` +
        `  sent before the previous ran out: ${stats(leads)} (target ${((2 * extendByMs) / 3).toFixed(0)}; never ≤ 0 means never late)`,
    );
  } finally {
    worker.kill();
    await receiver.close();
  }
}

await measure(300, 0);
await measure(3000, 0);
await measure(3000, 1500);
