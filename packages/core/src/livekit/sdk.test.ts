// The private and @internal surfaces of @livekit/agents the binding leans on (see sdk.ts and the
// README's list). When an upgrade removes one, this file fails and says which.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { AgentServer, initializeLogger, JobContext, JobRequest, ServerOptions } from "@livekit/agents";
import { idleCloseProblem, isSdkChildProcess, loadProtocol, loadSdkInternals, sdkDefaultLoad, sdkSurfaceProblems, TESTED_AGENTS_RANGE } from "./sdk.ts";

const agentsRoot = createRequire(import.meta.url).resolve("@livekit/agents").replace(/dist\/index\.c?js$/, "");
const agentsVersion = (JSON.parse(readFileSync(`${agentsRoot}package.json`, "utf8")) as { version: string }).version;

describe("the agents-js surfaces the binding uses", () => {
  test(`the installed @livekit/agents (${agentsVersion}) is in the tested range ${TESTED_AGENTS_RANGE}`, () => {
    const [major, minor] = agentsVersion.split(".").map(Number);
    expect(major === 1 && minor === 9, `@livekit/agents ${agentsVersion} is not in ${TESTED_AGENTS_RANGE}: test the binding against it, then widen the range`).toBe(true);
  });

  test("nothing is missing (the same check bindAgentPool runs at startup)", () => {
    expect(sdkSurfaceProblems()).toEqual([]);
  });

  test("the check names what is missing and what to do", () => {
    const problems = sdkSurfaceProblems({ WorkerMessage: undefined as never, WorkerStatus: {}, JobStatus: {} });
    expect(problems.join("\n")).toMatch(/WorkerMessage is not loadable/);
    expect(problems.join("\n")).toMatch(/WS_FULL is gone/);
    expect(problems.join("\n")).toMatch(/JS_SUCCESS\/JS_FAILED are gone/);
    expect(problems.every((p) => p.includes(TESTED_AGENTS_RANGE))).toBe(true);
  });

  test("the nested @livekit/protocol builds the updateWorker/updateJob messages the SDK's socket sends", () => {
    const proto = loadProtocol();
    const full = new proto.WorkerMessage({ message: { case: "updateWorker", value: { status: proto.WorkerStatus.WS_FULL, load: 1 } } }) as { toBinary(): Uint8Array };
    expect(full.toBinary().length).toBeGreaterThan(0);
    const job = new proto.WorkerMessage({ message: { case: "updateJob", value: { jobId: "j", status: proto.JobStatus.JS_FAILED, error: "x" } } }) as { toBinary(): Uint8Array };
    expect(job.toBinary().length).toBeGreaterThan(0);
  });

  test("@internal new JobRequest(job, onReject, onAccept) calls back with the accept arguments", async () => {
    const seen: unknown[] = [];
    const req = new JobRequest({ id: "AJ_1" } as never, async () => void seen.push("rejected"), async (args: unknown) => void seen.push(args));
    await req.accept("name", "", "meta", { a: "1" });
    await req.reject();
    expect(seen).toEqual([{ name: "name", identity: "agent-AJ_1", metadata: "meta", attributes: { a: "1" } }, "rejected"]);
  });

  test("AgentServer keeps the options object it was given, and with a worker token puts its default load in it", () => {
    const opts = new ServerOptions({ agent: "probe.js", wsURL: "ws://127.0.0.1:1", apiKey: "k", apiSecret: "s", workerToken: "wt", loadFunc: async () => 0.1, port: 0, host: "127.0.0.1" });
    const before = process.env.LIVEKIT_WORKER_TOKEN;
    initializeLogger({ pretty: false, level: "fatal" });
    const server = new AgentServer(opts);
    try {
      expect(opts.loadFunc).toBe(sdkDefaultLoad());
      expect(typeof server.drain).toBe("function");
      expect(typeof server.event.emit).toBe("function");
    } finally {
      if (before === undefined) delete process.env.LIVEKIT_WORKER_TOKEN;
      else process.env.LIVEKIT_WORKER_TOKEN = before;
    }
  });

  test("dist/ipc/job_proc_executor.js: JobProcExecutor (close, runningJob, init, proc) from the same install as AgentServer", async () => {
    const sdk = await loadSdkInternals();
    expect(idleCloseProblem(sdk)).toBeUndefined();
    expect(idleCloseProblem({ JobProcExecutor: undefined, sameInstall: true })).toMatch(/job_proc_executor\.js/);
    expect(idleCloseProblem({ ...sdk, sameInstall: false })).toMatch(/not the copy/);
    // What the idle close reads on a process: a fresh executor has no job, is not initialised
    // and has no child yet.
    const Executor = sdk.JobProcExecutor as unknown as new (opts: Record<string, unknown>) => { runningJob: unknown; init: { done: boolean }; proc: unknown; close(): Promise<void> };
    const executor = new Executor({ agent: "probe.js", initializeTimeout: 1000, closeTimeout: 1000, memoryWarnMB: 0, memoryLimitMB: 0, pingInterval: 2500, pingTimeout: 60_000, highPingThreshold: 500 });
    expect(executor.runningJob).toBeUndefined();
    expect(executor.init.done).toBe(false);
    expect(executor.proc).toBeUndefined();
    await executor.close();
  });

  test("JobContext.info is RunningJobInfo: the job's room-join token (the per-job proof to the parent) is ctx.info.token", () => {
    expect(typeof Object.getOwnPropertyDescriptor(JobContext.prototype, "info")?.get).toBe("function");
    initializeLogger({ pretty: false, level: "fatal" });
    const info = { token: "h.p.s", url: "ws://x", workerId: "w", job: { id: "AJ_1", room: { name: "r" } }, acceptArguments: { name: "", identity: "agent-AJ_1", metadata: "" } };
    const ctx = new JobContext({} as never, info as never, { on() {} } as never, () => {}, () => {}, {} as never);
    expect(ctx.info.token).toBe("h.p.s");
    expect(ctx.job.id).toBe("AJ_1");
  });

  test("the SDK's job and inference processes are recognised by their entry file", () => {
    expect(isSdkChildProcess(`${agentsRoot}dist/ipc/job_proc_lazy_main.js`)).toBe(true);
    expect(isSdkChildProcess(`${agentsRoot}dist/ipc/inference_proc_lazy_main.js`)).toBe(true);
    expect(isSdkChildProcess("/srv/worker/dist/main.js")).toBe(false);
    expect(isSdkChildProcess(undefined)).toBe(false);
  });
});
