import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { describe, expect, test } from "vitest";
import { defaultAgentIdentity, MAX_JOB_TOKEN, verifyJobToken } from "./job-token.ts";

const secret = "job-token-secret-job-token-secret-0";
const now = 1_800_000_000;

const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** An HS256 JWT as LiveKit mints a job's token (header, claims, signature). */
function mintJobToken(claims: Record<string, unknown>, options: { secret?: string; header?: Record<string, unknown> } = {}): string {
  const signingInput = `${b64(options.header ?? { alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const signature = createHmac("sha256", options.secret ?? secret).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

const claims = (overrides: Record<string, unknown> = {}) => ({
  iss: "APIkey",
  sub: "agent-AJ_1",
  nbf: now - 5,
  exp: now + 3600,
  video: { roomJoin: true, agent: true, room: "room-1" },
  ...overrides,
});

const expect1 = { secret, roomName: "room-1", nowSeconds: now };

describe("verifyJobToken", () => {
  test("a token LiveKit would mint for the job's room verifies, and its claims come back", () => {
    const checked = verifyJobToken(mintJobToken(claims()), { ...expect1, identity: "agent-AJ_1" });
    expect(checked).toEqual({ ok: true, claims: { room: "room-1", sub: "agent-AJ_1", exp: now + 3600, iss: "APIkey" } });
  });

  test("a token minted by livekit-server-sdk's AccessToken (what the dispatcher and LiveKit's SDKs sign) verifies", async () => {
    const sdk = createRequire(import.meta.resolve("@livekit/agents")).resolve("livekit-server-sdk");
    const { AccessToken } = (await import(sdk)) as { AccessToken: new (k: string, s: string, o: object) => { addGrant(g: object): void; toJwt(): Promise<string> } };
    const at = new AccessToken("APIkey", secret, { identity: defaultAgentIdentity("AJ_9"), ttl: "6h" });
    at.addGrant({ roomJoin: true, room: "room-9", agent: true, canPublish: true });
    const token = await at.toJwt();
    expect(verifyJobToken(token, { secret, roomName: "room-9", identity: "agent-AJ_9" })).toMatchObject({ ok: true, claims: { room: "room-9", sub: "agent-AJ_9" } });
    expect(verifyJobToken(token, { secret, roomName: "room-1" })).toEqual({ ok: false, problem: "job token is for another room" });
  });

  test.each([
    ["another room", mintJobToken(claims({ video: { room: "room-2" } })), /another room/],
    ["no room", mintJobToken(claims({ video: { roomJoin: true } })), /names no room/],
    ["no video grant", mintJobToken(claims({ video: undefined })), /names no room/],
    ["expired", mintJobToken(claims({ exp: now - 61 })), /expired/],
    ["no exp", mintJobToken(claims({ exp: undefined })), /no exp/],
    ["not yet valid", mintJobToken(claims({ nbf: now + 120 })), /nbf/],
    ["signed with another secret", mintJobToken(claims(), { secret: "another-secret" }), /signature does not verify/],
    ["alg none, unsigned", `${b64({ alg: "none", typ: "JWT" })}.${b64(claims())}.`, /not a compact JWT|alg/],
    ["alg none, with a signature", mintJobToken(claims(), { header: { alg: "none" } }), /alg is not HS256/],
    ["alg HS512", mintJobToken(claims(), { header: { alg: "HS512" } }), /alg is not HS256/],
    ["alg RS256 (key confusion)", mintJobToken(claims(), { header: { alg: "RS256" } }), /alg is not HS256/],
    ["alg hs256 (case)", mintJobToken(claims(), { header: { alg: "hs256" } }), /alg is not HS256/],
    ["a crit header", mintJobToken(claims(), { header: { alg: "HS256", crit: ["x"] } }), /critical/],
    ["not a JWT", "hello", /not a compact JWT/],
    ["four parts", `${mintJobToken(claims())}.x`, /not a compact JWT/],
    ["padding / non-base64url", `${mintJobToken(claims())}=`, /not a compact JWT/],
    ["a non-JSON header", `${b64("nope")}.${b64(claims())}.${"A".repeat(43)}`, /header is not a JSON object/],
    ["an array payload", mintJobToken([1] as never), /payload is not a JSON object/],
    ["empty", "", /no job token/],
    ["too long", "a".repeat(MAX_JOB_TOKEN + 1), /too long/],
  ])("%s is refused", (_name, token, problem) => {
    const checked = verifyJobToken(token, expect1);
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.problem).toMatch(problem);
  });

  test("a payload changed after signing is refused (the signature covers header.payload)", () => {
    const [h, , s] = mintJobToken(claims()).split(".");
    expect(verifyJobToken(`${h}.${b64(claims({ video: { room: "room-1" }, exp: now + 999_999 }))}.${s}`, expect1)).toMatchObject({ ok: false, problem: expect.stringMatching(/signature/) });
  });

  test("sub must be the accepted identity when it is known", () => {
    const token = mintJobToken(claims({ sub: "agent-AJ_2" }));
    expect(verifyJobToken(token, { ...expect1, identity: "agent-AJ_1" })).toEqual({ ok: false, problem: "job token is for another participant identity" });
    expect(verifyJobToken(token, expect1).ok).toBe(true);
    expect(verifyJobToken(mintJobToken(claims({ sub: 7 })), expect1)).toMatchObject({ ok: false, problem: expect.stringMatching(/sub/) });
  });

  test("exp has a small skew; anything that is not a string is refused; no problem quotes the token", () => {
    expect(verifyJobToken(mintJobToken(claims({ exp: now - 30 })), expect1).ok).toBe(true);
    for (const value of [undefined, null, 42, {}, ["a.b.c"]]) expect(verifyJobToken(value, expect1)).toEqual({ ok: false, problem: "no job token" });
    const token = mintJobToken(claims({ video: { room: "room-2" } }));
    const checked = verifyJobToken(token, expect1);
    expect(checked.ok).toBe(false);
    for (const part of token.split(".")) expect(JSON.stringify(checked)).not.toContain(part);
  });

  test("no secret: nothing verifies", () => {
    expect(verifyJobToken(mintJobToken(claims()), { ...expect1, secret: "" })).toMatchObject({ ok: false });
  });

  test("agents-js' default identity is agent-<job id>", () => {
    expect(defaultAgentIdentity("AJ_1")).toBe("agent-AJ_1");
  });
});
