/**
 * The identity provider stand-in for the simulator. The system runs no login service: as an IdP would after each
 * person signed in, this mints the bearer token of every simulated customer, restaurant and driver (their UUID as
 * `sub`), with the API's AUTH_TOKEN_SECRET from the stack's environment. Tokens are reused until shortly before
 * they expire, as an app keeps its session.
 */
import type { Role } from "../api/auth/principal.ts";
import { createTokenService } from "../api/auth/tokens.ts";
import { type AuthConfig, authConfig } from "../lib/config.ts";

export interface IdentityProvider {
  /** A valid bearer token for `sub` in `role`. */
  tokenFor(role: Role, sub: string): Promise<string>;
}

export interface SimIdentityOptions {
  auth?: AuthConfig;
  ttlSeconds?: number;
}

export function simIdentityProvider(options: SimIdentityOptions = {}): IdentityProvider {
  const tokens = createTokenService(options.auth ?? authConfig());
  const ttlSeconds = options.ttlSeconds ?? 3600;
  const renewBeforeMs = Math.min(300_000, (ttlSeconds * 1000) / 10);
  const sessions = new Map<string, { token: string; renewAt: number }>();

  return {
    async tokenFor(role, sub) {
      const key = `${role}:${sub}`;
      const session = sessions.get(key);
      if (session && Date.now() < session.renewAt) return session.token;
      const { token, expiresAt } = await tokens.mint(role, sub, { ttl: ttlSeconds });
      sessions.set(key, { token, renewAt: expiresAt.getTime() - renewBeforeMs });
      return token;
    },
  };
}
