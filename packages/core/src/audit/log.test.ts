import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { AuditEventType, AuditLog, AuditSinkTimeoutError } from "./log.ts";
import type { AuditRecord, AuditSink } from "./log.ts";
import { GENESIS_HASH, computeRecordHash } from "./hash.ts";
import { verifyAuditLog } from "./verify.ts";
import { auditLine } from "./line.ts";

/** A sink keeping what it acknowledged, as the JSON lines a file sink would write. */
function memorySink(name = "mem") {
  const lines: string[] = [];
  const batches: number[] = [];
  const sink: AuditSink = {
    name,
    async write(records) {
      batches.push(records.length);
      for (const r of records) lines.push(JSON.stringify(r));
    },
  };
  return { sink, lines, batches, seqs: () => lines.map((l) => (JSON.parse(l) as AuditRecord).seq) };
}

const never = () => new Promise<void>(() => {});
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("AuditLog.emit", () => {
  it("returns the chained record at once, with defaults, in the documented key order", () => {
    const log = new AuditLog({ origin: "w1", clock: () => 1000.5, version: "v1" });
    const a = log.emit(AuditEventType.DeploymentStarted, { reason: "release" });
    expect(Object.keys(a)).toEqual([
      "seq", "timestamp", "event", "actor", "target", "result", "version", "reason", "origin", "prev_hash", "hash",
    ]);
    expect(a).toMatchObject({
      seq: 1, timestamp: 1000.5, event: "deployment.started", actor: "system", target: "", result: "ok",
      version: "v1", reason: "release", origin: "w1", prev_hash: GENESIS_HASH,
    });
    expect(a.hash).toBe(computeRecordHash(a));
    const b = log.emit("worker.rejected", { actor: "pool", target: "job-1", result: "rejected", version: null });
    expect(b).toMatchObject({ seq: 2, actor: "pool", target: "job-1", result: "rejected", version: null, prev_hash: a.hash });
    expect(log.seq).toBe(2);
    expect(log.headHash).toBe(b.hash);
  });

  it("serialises to exactly the flat record, and the hash survives a parse/stringify round trip", () => {
    const log = new AuditLog({ origin: "w1" });
    const r = log.emit("x", { nested: { list: [1, "two", { three: true }] }, n: 1.5e-7, s: 'quote " and \\ and \n and é and \u2028' });
    const parsed = JSON.parse(JSON.stringify(r)) as Record<string, unknown>;
    expect(parsed).toEqual({ ...r });
    expect(computeRecordHash(parsed)).toBe(r.hash);
    const { hash: _h, ...withoutHash } = r;
    expect(JSON.stringify(r)).toBe(`${JSON.stringify(withoutHash).slice(0, -1)},"hash":"${r.hash}"}`);
  });

  it("gives each instance its own default origin", () => {
    const a = new AuditLog();
    const b = new AuditLog();
    expect(a.origin).not.toBe(b.origin);
    expect(a.origin).toContain(`-${process.pid}-`);
  });

  it("moves extra fields that collide with record or chain fields into field_conflicts", () => {
    const log = new AuditLog({ origin: "w1" });
    log.emit("first");
    const r = log.emit("x", { seq: 99, hash: "evil", origin: "other", prev_hash: "x", timestamp: 0, event: "y", field_conflicts: 1, keep: "me" });
    expect(r).toMatchObject({ seq: 2, origin: "w1", event: "x", keep: "me" });
    expect(r.field_conflicts).toEqual({ seq: 99, hash: "evil", origin: "other", prev_hash: "x", timestamp: 0, event: "y", field_conflicts: 1 });
    expect(r.hash).toBe(computeRecordHash(r));
    expect(r.prev_hash).not.toBe("x");
  });

  it("never throws on hostile input and marks what it could not keep", () => {
    const log = new AuditLog({ origin: "w1" });
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    const getter = Object.defineProperty({}, "boom", { enumerable: true, get: () => { throw new Error("getter exploded"); } });
    const badToJSON = { toJSON: () => { throw new Error("toJSON exploded"); } };
    const hostileProxy = new Proxy({}, { ownKeys: () => { throw new Error("no keys for you"); } });
    const records = [
      log.emit("x", { big: 10n, fn: () => 1, sym: Symbol("s"), nan: Number.NaN, inf: -Infinity, undef: undefined }),
      log.emit("x", { circular, getter, badToJSON, date: new Date(0), arr: [1, undefined, () => 2, 3n] }),
      log.emit("x", hostileProxy as never),
      log.emit(42 as never, null as never),
      log.emit(undefined as never, "not an object" as never),
      log.emit("x", { actor: { name: "obj" } as never, target: 7 as never, result: Symbol("r") as never, version: 3 as never }),
      log.emit("x", JSON.parse('{"__proto__": {"polluted": true}, "0": "index key"}') as never),
    ];
    expect(records[0]).toMatchObject({ big: "10", fn: "[unserializable function]", sym: "[unserializable symbol]", nan: "NaN", inf: "-Infinity" });
    expect("undef" in records[0]!).toBe(false);
    expect(records[1]).toMatchObject({
      circular: { a: 1, self: "[Circular]" },
      getter: { boom: "[unserializable: Error: getter exploded]" },
      badToJSON: "[unserializable: Error: toJSON exploded]",
      date: "1970-01-01T00:00:00.000Z",
      arr: [1, null, null, "3"],
    });
    expect(records[2]).toMatchObject({ emit_error: "Error: no keys for you" });
    expect(records[3]).toMatchObject({ event: "42", actor: "system" });
    expect(records[4]).toMatchObject({ event: "" });
    expect(records[5]).toMatchObject({ actor: '{"name":"obj"}', target: "7", result: "Symbol(r)", version: "3" });
    expect(Object.getPrototypeOf(records[6])).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const lines = records.map((r) => JSON.stringify(r));
    expect(records.map((r) => auditLine(r))).toEqual(lines);
    expect(verifyAuditLog(lines)).toMatchObject({ ok: true, records: 7 });
  });

  it("keeps going when the clock throws or returns garbage", () => {
    let calls = 0;
    const log = new AuditLog({ origin: "w1", clock: () => { calls++; if (calls === 1) throw new Error("clock"); return Number.NaN; } });
    const a = log.emit("x");
    const b = log.emit("y");
    expect(Number.isFinite(a.timestamp) && Number.isFinite(b.timestamp)).toBe(true);
    expect(b.prev_hash).toBe(a.hash);
  });

  it("snapshots values: mutating what was passed does not change the record", () => {
    const log = new AuditLog({ origin: "w1" });
    const payload = { list: [1, 2] };
    const r = log.emit("x", { payload });
    payload.list.push(3);
    expect(r.payload).toEqual({ list: [1, 2] });
    expect(Object.isFrozen(r) && Object.isFrozen(r.payload)).toBe(true);
    expect(computeRecordHash(JSON.parse(JSON.stringify(r)) as Record<string, unknown>)).toBe(r.hash);
  });

  it("property: any fields give a record whose line verifies", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string(), fc.dictionary(fc.string(), fc.anything({ withBigInt: true, withDate: true, withMap: true, withNullPrototype: true, withSparseArray: true, withTypedArray: true }))), { maxLength: 8 }), (events) => {
        const log = new AuditLog({ origin: "prop" });
        const records = events.map(([type, fields]) => log.emit(type, fields));
        const lines = records.map((r) => JSON.stringify(r));
        // The text the log remembers for line-writing sinks is exactly the record's JSON.
        expect(records.map((r) => auditLine(r))).toEqual(lines);
        expect(verifyAuditLog(lines)).toMatchObject({ ok: true, records: events.length });
      }),
      { numRuns: 200 },
    );
  });

  it("isolates hooks: a throwing hook changes nothing", async () => {
    const seen: string[] = [];
    const mem = memorySink();
    const log = new AuditLog({
      origin: "w1",
      sinks: [mem.sink],
      hooks: {
        onEmit: (r) => { seen.push(r.event); throw new Error("hook"); },
        onSinkError: () => { throw new Error("hook"); },
        onDropped: () => { throw new Error("hook"); },
      },
    });
    expect(log.emit("a").seq).toBe(1);
    expect(log.emit("b").seq).toBe(2);
    expect(seen).toEqual(["a", "b"]);
    expect(await log.flush()).toEqual({ ok: true, undelivered: [] });
    expect(mem.seqs()).toEqual([1, 2]);
  });

  it("survives a hook that emits (no endless recursion)", () => {
    const events: string[] = [];
    const log: AuditLog = new AuditLog({
      origin: "w1",
      hooks: { onEmit: (r) => { events.push(r.event); log.emit("from-hook"); } },
    });
    expect(log.emit("a").seq).toBe(1);
    expect(log.seq).toBe(2);
    expect(events).toEqual(["a"]);
  });

  it("resumes a chain after a restart so the concatenated log verifies", () => {
    const first = new AuditLog({ origin: "pod-0" });
    const lines = [first.emit("a"), first.emit("b")].map((r) => JSON.stringify(r));
    const last = JSON.parse(lines[1]!) as AuditRecord;
    const second = new AuditLog({ resumeFrom: last });
    expect(second.origin).toBe("pod-0");
    const c = second.emit("c");
    expect(c).toMatchObject({ seq: 3, prev_hash: last.hash });
    expect(verifyAuditLog([...lines, JSON.stringify(c)])).toMatchObject({ ok: true, origins: 1, records: 3 });
    // Without resuming, the same fixed origin restarting at seq 1 does not verify.
    const restarted = new AuditLog({ origin: "pod-0" }).emit("c");
    expect(verifyAuditLog([...lines, JSON.stringify(restarted)]).ok).toBe(false);
    expect(() => new AuditLog({ origin: "pod-1", resumeFrom: last })).toThrow(/cannot resume origin "pod-0" as origin "pod-1"/);
    expect(() => new AuditLog({ resumeFrom: { origin: "x", seq: -1, hash: "nope" } })).toThrow(/resumeFrom/);
  });

  it("rejects bad options with a message naming the option", () => {
    const sink = memorySink().sink;
    expect(() => new AuditLog({ sinks: [sink, sink] })).toThrow(/two sinks are named "mem"/);
    expect(() => new AuditLog({ sinks: [{ name: "x" } as never] })).toThrow(/`write\(records\)`/);
    expect(() => new AuditLog({ maxQueue: 0 })).toThrow(/maxQueue/);
    expect(() => new AuditLog({ writeTimeoutMs: -1 })).toThrow(/writeTimeoutMs/);
    expect(() => new AuditLog({ origin: "" })).toThrow(/origin/);
    expect(() => new AuditLog({ version: 2 as never })).toThrow(/`version` must be a string or null/);
  });
});

describe("AuditLog delivery", () => {
  it("delivers a burst of emits in one batch, in seq order, after emit returned", async () => {
    const mem = memorySink();
    const log = new AuditLog({ origin: "w1", sinks: [mem.sink] });
    for (let i = 0; i < 50; i++) log.emit("x", { i });
    expect(mem.lines).toEqual([]);
    await log.flush();
    expect(mem.batches).toEqual([50]);
    expect(mem.seqs()).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(verifyAuditLog(mem.lines).ok).toBe(true);
  });

  it("splits batches at maxBatch", async () => {
    const mem = memorySink();
    const log = new AuditLog({ origin: "w1", sinks: [mem.sink], maxBatch: 20 });
    for (let i = 0; i < 50; i++) log.emit("x");
    await log.flush();
    expect(mem.batches).toEqual([20, 20, 10]);
  });

  it("isolates throwing, rejecting and never-resolving sinks from the caller and from each other", async () => {
    const errors: string[] = [];
    const good = memorySink("good");
    const throwing: AuditSink = { name: "throwing", write: () => { throw new Error("sync boom"); } };
    const rejecting: AuditSink = { name: "rejecting", write: () => Promise.reject(new Error("async boom")) };
    const hung: AuditSink = { name: "hung", write: never };
    const log = new AuditLog({
      origin: "w1",
      sinks: [throwing, rejecting, hung, good.sink],
      retry: { initialMs: 1, maxMs: 5 },
      writeTimeoutMs: 0,
      hooks: { onSinkError: (sink) => errors.push(sink) },
    });
    for (let i = 0; i < 30; i++) expect(log.emit("x", { i }).seq).toBe(i + 1);
    const result = await log.flush({ timeoutMs: 50 });
    expect(good.seqs()).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(result.ok).toBe(false);
    expect(result.undelivered.map((u) => [u.sink, u.pending])).toEqual([["throwing", 30], ["rejecting", 30], ["hung", 30]]);
    const stats = Object.fromEntries(log.stats().sinks.map((s) => [s.name, s]));
    expect(stats.good).toMatchObject({ delivered: 30, pending: 0, dropped: 0, errors: 0, lastError: null });
    expect(stats.hung).toMatchObject({ delivered: 0, pending: 30, errors: 0 });
    expect(stats.throwing!.errors).toBeGreaterThanOrEqual(2);
    expect(stats.throwing!.lastError).toBe("Error: sync boom");
    expect(stats.rejecting!.lastError).toBe("Error: async boom");
    expect(errors).toContain("throwing");
    expect(errors).toContain("rejecting");
    expect(errors).not.toContain("good");
    await log.close({ timeoutMs: 10 });
  });

  it("counts and reports queue overflow per sink, never silently", async () => {
    const drops: Array<[string, number]> = [];
    const good = memorySink("good");
    const log = new AuditLog({
      origin: "w1",
      sinks: [{ name: "hung", write: never }, good.sink],
      maxQueue: 5,
      hooks: { onDropped: (sink, count) => drops.push([sink, count]) },
    });
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 5; i++) log.emit("x");
      await tick();
    }
    expect(drops).toEqual([["hung", 5], ["hung", 5], ["hung", 5]]);
    expect(log.stats().sinks).toEqual([
      { name: "hung", delivered: 0, pending: 5, dropped: 15, errors: 0, lastError: null },
      { name: "good", delivered: 20, pending: 0, dropped: 0, errors: 0, lastError: null },
    ]);
    // The bound is per sink: the healthy one kept up and got everything.
    expect(good.seqs()).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const result = await log.flush({ timeoutMs: 10 });
    expect(result).toEqual({ ok: false, undelivered: [{ sink: "hung", pending: 5, dropped: 15, unrecordedLoss: true, lastError: null }] });
  });

  it("drops the newest records of a burst beyond maxQueue and reports them once per tick", async () => {
    const drops: Array<[string, number]> = [];
    const mem = memorySink();
    const log = new AuditLog({ origin: "w1", sinks: [mem.sink], maxQueue: 5, hooks: { onDropped: (s, n) => drops.push([s, n]) } });
    for (let i = 0; i < 12; i++) log.emit("x");
    const result = await log.flush();
    // The loss is written into the chain (seq 13) as soon as the sink has room again.
    expect(mem.seqs()).toEqual([1, 2, 3, 4, 5, 13]);
    expect(drops).toEqual([["mem", 7]]);
    const records = mem.lines.map((l) => JSON.parse(l) as AuditRecord);
    expect(records[5]).toMatchObject({ event: "audit.records_dropped", sink: "mem", dropped_first_seq: 6, dropped_last_seq: 12, dropped_prev_hash: records[4]!.hash });
    expect(verifyAuditLog(mem.lines)).toMatchObject({ ok: false, fault: "overflow", lost: [{ origin: "w1", sink: "mem", firstSeq: 6, lastSeq: 12 }] });
    // flush().ok describes the present: the loss is recorded, nothing is pending.
    expect(result.ok).toBe(true);
  });

  it("retries a failed write with the same records: in order, no duplicates, nothing lost", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 6 }),
        async (failPattern, bursts) => {
          const received: number[] = [];
          let call = 0;
          const flaky: AuditSink = {
            name: "flaky",
            async write(records) {
              const fail = failPattern[call++ % failPattern.length] && call < 40;
              if (fail) throw new Error("transient");
              for (const r of records) received.push(r.seq);
            },
          };
          const log = new AuditLog({ origin: "p", sinks: [flaky], maxBatch: 3, retry: { initialMs: 0, maxMs: 1 } });
          let total = 0;
          for (const n of bursts) {
            for (let i = 0; i < n; i++) log.emit("x");
            total += n;
            await tick();
          }
          const result = await log.flush();
          expect(result.ok).toBe(true);
          expect(received).toEqual(Array.from({ length: total }, (_, i) => i + 1));
          expect(log.stats().sinks[0]).toMatchObject({ delivered: total, pending: 0, dropped: 0 });
        },
      ),
      { numRuns: 60 },
    );
  });

  it("times out a hung write, reports it, and delivers on the retry", async () => {
    const errors: unknown[] = [];
    const received: number[] = [];
    let call = 0;
    const sink: AuditSink = {
      name: "sometimes-hangs",
      write(records) {
        if (call++ === 0) return never();
        for (const r of records) received.push(r.seq);
        return Promise.resolve();
      },
    };
    const log = new AuditLog({
      origin: "w1",
      sinks: [sink],
      writeTimeoutMs: 5,
      retry: { initialMs: 1 },
      hooks: { onSinkError: (_s, e) => errors.push(e) },
    });
    log.emit("a");
    log.emit("b");
    expect(await log.flush()).toEqual({ ok: true, undelivered: [] });
    expect(received).toEqual([1, 2]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(AuditSinkTimeoutError);
    expect(log.stats().sinks[0]!.lastError).toMatch(/did not settle a write of 2 records within 5 ms/);
  });

  it("flush waits for acknowledgement of records emitted before it, then the sinks' own flush", async () => {
    const order: string[] = [];
    let release!: () => void;
    const sink: AuditSink = {
      name: "gated",
      write: (records) => new Promise<void>((resolve) => {
        release = () => { order.push(`ack ${records.map((r) => r.seq).join(",")}`); resolve(); };
      }),
      flush: async () => { order.push("sink flush"); },
    };
    const log = new AuditLog({ origin: "w1", sinks: [sink] });
    log.emit("a");
    log.emit("b");
    let flushed = false;
    const done = log.flush().then((r) => { flushed = true; return r; });
    await tick();
    expect(flushed).toBe(false);
    log.emit("c"); // after the flush call: not waited for
    release();
    expect(await done).toEqual({ ok: true, undelivered: [] });
    expect(order).toEqual(["ack 1,2", "sink flush"]);
    expect(log.stats().sinks[0]!.pending).toBe(1);
    release();
  });

  it("flush retries a sink in backoff at once instead of waiting the backoff out", async () => {
    let calls = 0;
    const received: number[] = [];
    const sink: AuditSink = {
      name: "flaky-once",
      async write(records) {
        if (calls++ === 0) throw new Error("transient");
        received.push(...records.map((r) => r.seq));
      },
    };
    const log = new AuditLog({ origin: "w1", sinks: [sink], retry: { initialMs: 3_600_000 } });
    log.emit("a");
    await tick();
    expect(log.stats().sinks[0]).toMatchObject({ errors: 1, pending: 1 });
    expect(await log.flush({ timeoutMs: 10_000 })).toEqual({ ok: true, undelivered: [] });
    expect(received).toEqual([1]);
  });

  it("flush with no sinks or nothing emitted resolves at once", async () => {
    expect(await new AuditLog().flush()).toEqual({ ok: true, undelivered: [] });
    expect(await new AuditLog({ sinks: [memorySink().sink] }).flush()).toEqual({ ok: true, undelivered: [] });
  });

  it("a failing sink flush is counted, not thrown", async () => {
    const log = new AuditLog({ sinks: [{ name: "f", write: async () => {}, flush: async () => { throw new Error("flush failed"); } }] });
    log.emit("x");
    const result = await log.flush();
    expect(result.ok).toBe(true);
    expect(log.stats().sinks[0]).toMatchObject({ errors: 1, lastError: "Error: flush failed" });
  });

  it("close flushes, closes every sink once, and drops (counting) what is emitted afterwards", async () => {
    const closed: string[] = [];
    const drops: Array<[string, number]> = [];
    const mem = memorySink("a");
    const log = new AuditLog({
      origin: "w1",
      sinks: [
        { ...mem.sink, write: mem.sink.write, close: async () => { closed.push("a"); } },
        { name: "b", write: async () => {}, close: async () => { closed.push("b"); throw new Error("close failed"); } },
      ],
      hooks: { onDropped: (sink, n) => drops.push([sink, n]) },
    });
    log.emit("x");
    const first = log.close();
    expect(log.close()).toBe(first);
    expect(await first).toEqual({ ok: true, undelivered: [] });
    expect(closed).toEqual(["a", "b"]);
    expect(mem.seqs()).toEqual([1]);
    const late = log.emit("late");
    expect(late.seq).toBe(2);
    await tick();
    expect(drops).toEqual([["a", 1], ["b", 1]]);
    expect(log.stats().sinks.map((s) => s.dropped)).toEqual([1, 1]);
    expect(log.stats().sinks[1]).toMatchObject({ errors: 1, lastError: "Error: close failed" });
  });

  it("a flush waiting on a dead sink ends when the log is closed", async () => {
    const log = new AuditLog({ origin: "w1", sinks: [{ name: "dead", write: never }] });
    log.emit("x");
    const waiting = log.flush();
    await log.close({ timeoutMs: 5 });
    expect(await waiting).toEqual({ ok: false, undelivered: [{ sink: "dead", pending: 1, dropped: 0, unrecordedLoss: false, lastError: null }] });
  });

  it("close gives up on a dead sink after its timeout and reports what was not delivered", async () => {
    const log = new AuditLog({ origin: "w1", sinks: [{ name: "dead", write: never, close: never }] });
    log.emit("x");
    log.emit("y");
    expect(await log.close({ timeoutMs: 20 })).toEqual({
      ok: false,
      undelivered: [{ sink: "dead", pending: 2, dropped: 0, unrecordedLoss: false, lastError: null }],
    });
  });
});
