import { describe, expect, test } from "vitest";
import { InvalidDeploymentError, resolveLivekitDeployment, validateLivekitDeployment } from "./deployment.ts";

describe("LiveKit's deployment routing key (livekit/protocol agent/environment.go ValidateDeployment)", () => {
  test("valid names pass unchanged; the default deployment is the empty string", () => {
    for (const name of ["", "blue", "v2.0.0", "prod-eu-1", "x".repeat(64), "é".repeat(32)]) {
      expect(validateLivekitDeployment(name, "d")).toBe(name);
    }
  });

  test("over 64 bytes, an underscore or whitespace is refused with the rule named", () => {
    expect(() => validateLivekitDeployment("x".repeat(65), "LIVEKIT_AGENT_DEPLOYMENT")).toThrow(/65 bytes; LiveKit accepts at most 64 bytes/);
    // 33 two-byte characters: 33 characters but 66 bytes.
    expect(() => validateLivekitDeployment("é".repeat(33), "d")).toThrow(/66 bytes/);
    expect(() => validateLivekitDeployment("bad_name", "LIVEKIT_AGENT_DEPLOYMENT")).toThrow(/LIVEKIT_AGENT_DEPLOYMENT "bad_name" contains "_".*use "-" instead/);
    for (const name of ["a b", "a\tb", "a\nb", "a\u00a0b"]) {
      expect(() => validateLivekitDeployment(name, "d")).toThrow(InvalidDeploymentError);
      expect(() => validateLivekitDeployment(name, "d")).toThrow(/whitespace/);
    }
  });

  test("the version never becomes the routing key unless routeByVersion says so", () => {
    expect(resolveLivekitDeployment("v2.0.0", {}, {})).toEqual({ deployment: "", source: "LIVEKIT_AGENT_DEPLOYMENT" });
    expect(resolveLivekitDeployment("v2.0.0", {}, { LIVEKIT_AGENT_DEPLOYMENT: "eu" })).toEqual({ deployment: "eu", source: "LIVEKIT_AGENT_DEPLOYMENT" });
    expect(resolveLivekitDeployment("v2.0.0", { livekitDeployment: "blue" }, { LIVEKIT_AGENT_DEPLOYMENT: "eu" })).toEqual({ deployment: "blue", source: "livekitDeployment" });
    expect(resolveLivekitDeployment("v2.0.0", { routeByVersion: true }, { LIVEKIT_AGENT_DEPLOYMENT: "eu" })).toEqual({ deployment: "v2.0.0", source: "deploymentVersion" });
  });

  test("routeByVersion needs a version LiveKit accepts, and excludes livekitDeployment", () => {
    expect(() => resolveLivekitDeployment(null, { routeByVersion: true }, {})).toThrow(/routeByVersion needs the pool's deploymentVersion/);
    expect(() => resolveLivekitDeployment("v2_0", { routeByVersion: true }, {})).toThrow(/deploymentVersion \(routeByVersion\) "v2_0" contains "_"/);
    expect(() => resolveLivekitDeployment("v2", { routeByVersion: true, livekitDeployment: "x" }, {})).toThrow(/either livekitDeployment or routeByVersion/);
    expect(() => resolveLivekitDeployment("v2", {}, { LIVEKIT_AGENT_DEPLOYMENT: "bad_name" })).toThrow(/LIVEKIT_AGENT_DEPLOYMENT "bad_name"/);
    expect(() => validateLivekitDeployment(7 as unknown as string, "livekitDeployment")).toThrow(/must be a string, got number/);
  });
});
