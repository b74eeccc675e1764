import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createServer, type Server } from "node:http";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";
import { startDispatcher, waitForEvent, type Dispatcher } from "@openrtc/livekit-dispatcher";

const workerScript = fileURLToPath(new URL("../src/worker.ts", import.meta.url));
const apiKey = "otel-test";
const apiSecret = "otel-test-secret-otel-test-secret";

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string };
}
interface OtlpSpan {
  name: string;
  attributes: OtlpAttribute[];
  status?: { code?: number };
}
interface OtlpBody {
  resourceSpans: { resource: { attributes: OtlpAttribute[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
}

const attrs = (list: OtlpAttribute[]) => Object.fromEntries(list.map((a) => [a.key, a.value.stringValue]));

describe("demo worker exports one span per call over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set", () => {
  let receiver: Server;
  let endpoint: string;
  const bodies: OtlpBody[] = [];
  let dispatcher: Dispatcher;

  beforeAll(async () => {
    // A local OTLP/HTTP (JSON) receiver: what a collector would be.
    receiver = createServer((req, res) => {
      let data = "";
      req.on("data", (d) => (data += d));
      req.on("end", () => {
        if (req.url === "/v1/traces") bodies.push(JSON.parse(data) as OtlpBody);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    receiver.listen(0, "127.0.0.1");
    await once(receiver, "listening");
    endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    dispatcher = await startDispatcher({ apiKey, apiSecret, profile: "livekit" });
  });
  afterAll(async () => {
    await dispatcher?.close();
    receiver?.close();
  });

  test("span attributes, status, and service.version from the worker's deployment_version", async () => {
    const child = spawn(process.execPath, ["--conditions=@openrtc/source", "--import", "tsx", workerScript, "start"], {
      env: {
        ...process.env,
        LIVEKIT_URL: dispatcher.url,
        LIVEKIT_API_KEY: apiKey,
        LIVEKIT_API_SECRET: apiSecret,
        OPENRTC_DEPLOYMENT_VERSION: "v9.9.9",
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      },
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    const exited = once(child, "exit");
    await new Promise<void>((resolve, reject) => {
      child.on("message", (m: { type?: string }) => m.type === "ready" && resolve());
      child.once("exit", () => reject(new Error("worker exited before registering")));
    });
    const job = dispatcher.dispatch({ roomName: "otel-room", metadata: JSON.stringify({ tenant: "acme", duration_ms: 200 }) });
    await waitForEvent(dispatcher.events, "job_ended", (record) => record.id === job.id, 60_000);
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);

    const spans = bodies.flatMap((b) =>
      b.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((span) => ({ span, resource: attrs(rs.resource.attributes) })))),
    );
    const session = spans.filter((s) => s.span.name === "openrtc.session");
    expect(session).toHaveLength(1);
    expect(session[0]!.resource).toMatchObject({ "service.name": "openrtc-demo-worker", "service.version": "v9.9.9" });
    expect(attrs(session[0]!.span.attributes)).toMatchObject({
      "openrtc.deployment_version": "v9.9.9",
      "openrtc.tenant": "acme",
      "livekit.job.id": job.id,
      "livekit.room.name": "otel-room",
      "openrtc.session.status": "success",
    });
    expect(session[0]!.span.status?.code).toBe(1);
  });
});
