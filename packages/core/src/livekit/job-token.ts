import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The per-job proof a job process presents on the session channel: the room-join token LiveKit
 * handed its assignment (`JobAssignment.token`, agents-js `ctx.info.token`). LiveKit signs it
 * HS256 with the worker's API secret (livekit-server `BuildAgentToken(w.apiKey, w.apiSecret, …)`,
 * valid 1 h), for the job's room (`video.room`) and the identity the worker accepted with
 * (`sub`; agents-js defaults it to `agent-<job id>`). A sibling job process holds its own token,
 * not another job's.
 *
 * Pure: no I/O, never throws, and no problem text ever quotes the token.
 */

/** Longest token accepted (the agent's accept metadata and attributes ride in it). */
export const MAX_JOB_TOKEN = 16_384;
/** Clock skew allowed on `exp` and `nbf`, in seconds. */
export const JOB_TOKEN_SKEW_SECONDS = 60;

export interface JobTokenExpectation {
  /** The HMAC key: the LiveKit API secret the worker connects with. */
  secret: string;
  /** The room the session's job is in (`video.room` must equal it). */
  roomName: string;
  /** When known, the participant identity the worker accepted the job with (`sub` must equal it). */
  identity?: string;
  /** Unix seconds. Default: now. */
  nowSeconds?: number;
  /** Default `JOB_TOKEN_SKEW_SECONDS`. */
  skewSeconds?: number;
}

export interface JobTokenClaims {
  readonly room: string;
  /** The participant identity the token is for ("" when it names none). */
  readonly sub: string;
  readonly exp: number;
  /** The API key that signed it (public). */
  readonly iss: string | undefined;
}

export type JobTokenCheck = { ok: true; claims: JobTokenClaims } | { ok: false; problem: string };

const SEGMENT = /^[A-Za-z0-9_-]+$/;

function decodeJson(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Checks a LiveKit job token against what the parent knows about the job. */
export function verifyJobToken(token: unknown, expected: JobTokenExpectation): JobTokenCheck {
  if (typeof token !== "string" || token === "") return { ok: false, problem: "no job token" };
  if (token.length > MAX_JOB_TOKEN) return { ok: false, problem: "job token too long" };
  if (expected.secret === "") return { ok: false, problem: "no secret to verify the job token with" };
  const parts = token.split(".");
  if (parts.length !== 3 || !parts.every((p) => SEGMENT.test(p))) return { ok: false, problem: "job token is not a compact JWT" };
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const header = decodeJson(headerPart);
  if (header === undefined) return { ok: false, problem: "job token header is not a JSON object" };
  // Only HS256: "none", RS/ES (key confusion) and anything else are refused before any crypto.
  if (header.alg !== "HS256") return { ok: false, problem: "job token alg is not HS256" };
  if (header.crit !== undefined) return { ok: false, problem: "job token has critical header extensions" };
  const signature = Buffer.from(signaturePart, "base64url");
  const mac = createHmac("sha256", expected.secret).update(`${headerPart}.${payloadPart}`).digest();
  if (signature.length !== mac.length || !timingSafeEqual(signature, mac)) {
    return { ok: false, problem: "job token signature does not verify with the worker's API secret" };
  }
  const payload = decodeJson(payloadPart);
  if (payload === undefined) return { ok: false, problem: "job token payload is not a JSON object" };
  const now = expected.nowSeconds ?? Math.floor(Date.now() / 1000);
  const skew = expected.skewSeconds ?? JOB_TOKEN_SKEW_SECONDS;
  const exp = payload.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp)) return { ok: false, problem: "job token has no exp" };
  if (exp + skew <= now) return { ok: false, problem: "job token expired" };
  const nbf = payload.nbf;
  if (nbf !== undefined && (typeof nbf !== "number" || !Number.isFinite(nbf) || nbf - skew > now)) return { ok: false, problem: "job token not yet valid (nbf)" };
  const video = payload.video;
  const room = video !== null && typeof video === "object" && !Array.isArray(video) ? (video as Record<string, unknown>).room : undefined;
  if (typeof room !== "string" || room === "") return { ok: false, problem: "job token names no room" };
  if (room !== expected.roomName) return { ok: false, problem: "job token is for another room" };
  const sub = payload.sub;
  if (sub !== undefined && typeof sub !== "string") return { ok: false, problem: "job token sub is not a string" };
  if (expected.identity !== undefined && sub !== expected.identity) return { ok: false, problem: "job token is for another participant identity" };
  const iss = typeof payload.iss === "string" ? payload.iss : undefined;
  return { ok: true, claims: { room, sub: sub ?? "", exp, iss } };
}

/** agents-js' participant identity for a job accepted without one (`JobRequest.accept`). */
export function defaultAgentIdentity(jobId: string): string {
  return `agent-${jobId}`;
}
