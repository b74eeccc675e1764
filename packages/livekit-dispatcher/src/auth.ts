import { TokenVerifier } from "livekit-server-sdk";

export type AuthResult = { ok: true; claims: Record<string, unknown> } | { ok: false; reason: string };

/**
 * Checks an `Authorization: Bearer <jwt>` header against the API key/secret, like LiveKit.
 * Reasons never include the token itself.
 */
export async function verifyBearer(
  verifier: TokenVerifier,
  header: string | undefined,
  requiredGrant: "agent" | "roomCreate",
): Promise<AuthResult> {
  if (!header) return { ok: false, reason: "missing authorization header" };
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1]) return { ok: false, reason: "authorization header is not 'Bearer <token>'" };
  let claims: Record<string, unknown>;
  try {
    claims = (await verifier.verify(match[1])) as Record<string, unknown>;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return { ok: false, reason: `invalid token: ${why}` };
  }
  const video = claims["video"] as Record<string, unknown> | undefined;
  if (video?.[requiredGrant] !== true) {
    return { ok: false, reason: `token lacks the video.${requiredGrant} grant` };
  }
  return { ok: true, claims };
}
