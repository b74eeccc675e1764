import { JobType, RegisterWorkerRequest } from "@livekit/protocol";
import { describe, expect, it } from "vitest";
import { MAX_DEPLOYMENT_BYTES, validateDeployment, validateRegistration } from "./registration.ts";

// Mirrors livekit/protocol agent/environment.go ValidateDeployment (messages included).
describe("validateDeployment (livekit/protocol agent/environment.go ValidateDeployment)", () => {
  it("accepts the empty deployment and ordinary names", () => {
    for (const ok of ["", "blue", "v2.0.0", "green-2026-08", "a".repeat(MAX_DEPLOYMENT_BYTES), "déploiement"]) {
      expect(validateDeployment(ok), ok).toBeUndefined();
    }
  });

  it("refuses more than 64 bytes, counting UTF-8 bytes, not characters", () => {
    expect(validateDeployment("a".repeat(65))).toBe("deployment exceeds 64 bytes");
    expect(validateDeployment("é".repeat(33))).toBe("deployment exceeds 64 bytes"); // 33 chars, 66 bytes
  });

  it("refuses the reserved '_'", () => {
    expect(validateDeployment("bad_name")).toBe("deployment contains reserved character '_'");
  });

  it("refuses whitespace and control bytes, naming the byte position", () => {
    expect(validateDeployment("a b")).toBe("deployment contains whitespace or control byte at position 1");
    expect(validateDeployment("\tx")).toBe("deployment contains whitespace or control byte at position 0");
    expect(validateDeployment("x\u007f")).toBe("deployment contains whitespace or control byte at position 1");
    expect(validateDeployment("x\n")).toBe("deployment contains whitespace or control byte at position 1");
  });
});

// Mirrors livekit/livekit pkg/agent/worker.go WorkerRegisterer.HandleRegister.
describe("validateRegistration (pkg/agent/worker.go HandleRegister)", () => {
  it("refuses an unknown job type before looking at the deployment", () => {
    expect(validateRegistration(new RegisterWorkerRequest({ type: 42 as JobType, deployment: "bad_name" }))).toBe("unknown job type");
  });

  it("refuses an invalid deployment and accepts a valid registration", () => {
    expect(validateRegistration(new RegisterWorkerRequest({ type: JobType.JT_ROOM, deployment: "bad_name" }))).toMatch(/reserved character/);
    expect(validateRegistration(new RegisterWorkerRequest({ type: JobType.JT_PUBLISHER, deployment: "blue" }))).toBeUndefined();
  });
});
