/**
 * Identities for API tests: who a call is made as. A harness mints tokens with its own random secret (so no test
 * depends on the stack's), and these helpers name the callers of the rules table.
 */
import { randomBytes } from "node:crypto";
import { type Principal } from "../../../api/auth/principal.ts";
import { createTokenService, type TokenService } from "../../../api/auth/tokens.ts";
import { type AuthConfig, parseAuthConfig } from "../../../lib/config.ts";

export const customer = (sub: string): Principal => ({ role: "customer", sub });
export const restaurant = (sub: string): Principal => ({ role: "restaurant", sub });
export const driver = (sub: string): Principal => ({ role: "driver", sub });
export const tracker = (orderId: string): Principal => ({ role: "tracker", sub: orderId });
export const OPS: Principal = { role: "operations", sub: "ops-test" };

/** A config like production's, with a fresh random secret (and the same issuer and audience). */
export function testAuthConfig(overrides: Record<string, string> = {}): AuthConfig {
  return parseAuthConfig({ AUTH_TOKEN_SECRET: randomBytes(32).toString("hex"), ...overrides });
}

/** Who a call is made as: a principal (a valid token is minted for it) or a raw token (sent as it is). */
export type Caller = Principal | string;

export function tokenMinter(tokens: TokenService) {
  const cache = new Map<string, string>();
  return async (caller: Caller): Promise<string> => {
    if (typeof caller === "string") return caller;
    const key = `${caller.role}:${caller.sub}`;
    let token = cache.get(key);
    if (!token) {
      token = (await tokens.mint(caller.role, caller.sub, { ttl: "1h" })).token;
      cache.set(key, token);
    }
    return token;
  };
}

/** Well-formed tokens the API must refuse: expired, or signed with a key it does not know. */
export async function refusedTokens(cfg: AuthConfig, who: Principal) {
  const ours = createTokenService(cfg);
  const stranger = createTokenService(testAuthConfig());
  return {
    expired: (await ours.mint(who.role, who.sub, { ttl: -(cfg.clockToleranceSeconds + 60) })).token,
    foreignKey: (await stranger.mint(who.role, who.sub, { ttl: "1h" })).token,
  };
}
