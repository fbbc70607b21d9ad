/**
 * Bearer tokens: HS256 JWTs through `jose` (no crypto of our own). Each key's `kid` is a fingerprint of its secret,
 * so during a rotation (AUTH_TOKEN_SECRET_PREVIOUS) a token names the key that verifies it; only the current secret
 * signs. Issuer, audience and an expiry are required on every token.
 */
import { createHash } from "node:crypto";
import { decodeJwt, errors, type JWTHeaderParameters, type JWTPayload, jwtVerify, SignJWT } from "jose";
import type { AuthConfig } from "../../lib/config.ts";
import { AppError } from "../../lib/errors.ts";
import { isRole, OPERATOR_PATTERN, type Principal, type Role, UUID_PATTERN, UUID_SUBJECT_ROLES } from "./principal.ts";

const ALGORITHM = "HS256";

interface SigningKey {
  kid: string;
  secret: Uint8Array;
}

function signingKey(secret: string): SigningKey {
  const bytes = new TextEncoder().encode(secret);
  // Public, stable, and reveals nothing usable: a truncated hash of the secret.
  const kid = createHash("sha256").update(bytes).digest("base64url").slice(0, 16);
  return { kid, secret: bytes };
}

export interface MintOptions {
  /** A jose time span ("12h", "30 min") or seconds. */
  ttl: string | number;
  /** Extra claims (e.g. what a tracking link was made for); never overrides role/sub. */
  claims?: Record<string, unknown>;
}

export interface Minted {
  token: string;
  expiresAt: Date;
}

const unauthenticated = (why: string, cause?: unknown) => new AppError("UNAUTHENTICATED", why, { cause });

/** The claims as a Principal, or why they are not one. */
function principalOf(payload: JWTPayload): Principal {
  const { role, sub } = payload;
  if (!isRole(role)) throw unauthenticated("the token has no valid role");
  if (typeof sub !== "string") throw unauthenticated("the token has no subject");
  const valid = UUID_SUBJECT_ROLES.includes(role) ? UUID_PATTERN.test(sub) : OPERATOR_PATTERN.test(sub);
  if (!valid) throw unauthenticated(`the token's subject is not a valid ${role} id`);
  // Database UUIDs are lower case; paths are compared in lower case too (see sameId in plugin.ts).
  return { role, sub: role === "operations" ? sub : sub.toLowerCase() };
}

/**
 * Verified tokens kept until they expire: a phone or a browser sends the same token with every request, and an HMAC
 * verification through jose costs ~25-100 µs (more than a cached GET /track answer). Only a token that passed
 * verification gets in; each hit re-checks the expiry.
 */
const VERIFIED_CACHE_MAX = 100_000;

export function createTokenService(cfg: AuthConfig, options: { verifiedCacheMax?: number } = {}) {
  const verifiedCacheMax = options.verifiedCacheMax ?? VERIFIED_CACHE_MAX;
  const verified = new Map<string, { principal: Principal; expiresMs: number }>();
  const current = signingKey(cfg.tokenSecret);
  const keys = new Map<string, Uint8Array>([[current.kid, current.secret]]);
  if (cfg.previousTokenSecret) {
    const previous = signingKey(cfg.previousTokenSecret);
    keys.set(previous.kid, previous.secret);
  }
  const verifyOptions = {
    algorithms: [ALGORITHM],
    issuer: cfg.issuer,
    audience: cfg.audience,
    requiredClaims: ["exp", "sub"],
    clockTolerance: cfg.clockToleranceSeconds,
  };

  return {
    kid: current.kid,

    async mint(role: Role, sub: string, options: MintOptions): Promise<Minted> {
      principalOf({ role, sub }); // never mint what verify would refuse
      const jwt = new SignJWT({ ...options.claims, role })
        .setProtectedHeader({ alg: ALGORITHM, kid: current.kid, typ: "JWT" })
        .setSubject(sub)
        .setIssuer(cfg.issuer)
        .setAudience(cfg.audience)
        .setIssuedAt()
        .setExpirationTime(typeof options.ttl === "number" ? Math.floor(Date.now() / 1000) + options.ttl : options.ttl);
      const token = await jwt.sign(current.secret);
      return { token, expiresAt: new Date(decodeJwt(token).exp! * 1000) };
    },

    /**
     * The caller behind a bearer token; UNAUTHENTICATED (401) for anything not signed by us, current and meant for us.
     * `remember: false` leaves a new token out of the cache: a caller that verifies once and holds the result (a live
     * stream) would only pay its memory.
     */
    async verify(token: string, options: { remember?: boolean } = {}): Promise<Principal> {
      const known = verified.get(token);
      if (known) {
        if (Date.now() < known.expiresMs) return known.principal;
        verified.delete(token);
      }
      try {
        const { payload } = await jwtVerify(
          token,
          (header: JWTHeaderParameters) => {
            const key = header.kid === undefined ? undefined : keys.get(header.kid);
            if (!key) throw unauthenticated("the token is signed with an unknown key");
            return key;
          },
          verifyOptions,
        );
        const principal = principalOf(payload);
        if (options.remember === false) return principal;
        if (verified.size >= verifiedCacheMax) verified.delete(verified.keys().next().value!); // oldest first
        verified.set(token, { principal, expiresMs: (payload.exp! + cfg.clockToleranceSeconds) * 1000 });
        return principal;
      } catch (error) {
        if (error instanceof AppError) throw error;
        if (error instanceof errors.JWTExpired) throw unauthenticated("the token has expired", error);
        if (error instanceof errors.JOSEError) throw unauthenticated(`invalid token (${error.code})`, error);
        throw unauthenticated("invalid token", error);
      }
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
