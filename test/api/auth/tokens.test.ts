/** Tokens: what verifies, what is refused and why, and a rotation of the signing secret. */
import { describe, expect, test } from "bun:test";
import { SignJWT, UnsecuredJWT } from "jose";
import { createTokenService } from "../../../api/auth/tokens.ts";
import { AppError } from "../../../lib/errors.ts";
import { testAuthConfig } from "../support/auth.ts";

const DRIVER = "0f8fad5b-d9cb-469f-a165-70867728950e";
const cfg = testAuthConfig();
const tokens = createTokenService(cfg);
const secret = new TextEncoder().encode(cfg.tokenSecret);

/** A token signed with our secret and kid, with the claims and header given (to forge the edge cases). */
async function handMade(claims: Record<string, unknown>, options: { exp?: number | null; iss?: string; aud?: string } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256", kid: tokens.kid }).setIssuedAt();
  jwt.setIssuer(options.iss ?? cfg.issuer).setAudience(options.aud ?? cfg.audience);
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? "1h");
  return jwt.sign(secret);
}

async function refusal(token: string): Promise<string> {
  const error = await tokens.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe("UNAUTHENTICATED");
  return (error as AppError).message;
}

describe("tokens", () => {
  test("a minted token verifies to its role and subject, with kid, issuer, audience and expiry", async () => {
    const { token, expiresAt } = await tokens.mint("driver", DRIVER.toUpperCase(), { ttl: "2h" });
    expect(await tokens.verify(token)).toEqual({ role: "driver", sub: DRIVER });
    const [header, payload] = token.split(".").slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    expect(header).toEqual({ alg: "HS256", kid: tokens.kid, typ: "JWT" });
    expect(payload).toMatchObject({ role: "driver", iss: cfg.issuer, aud: cfg.audience });
    expect(Math.abs(expiresAt.getTime() - (Date.now() + 2 * 3600_000))).toBeLessThan(5_000);
  });

  const refused: [string, () => Promise<string>, string][] = [
    ["expired", async () => (await tokens.mint("operations", "ops", { ttl: -120 })).token, "expired"],
    ["without exp", () => handMade({ role: "operations", sub: "ops" }, { exp: null }), "invalid token"],
    ["for another audience", () => handMade({ role: "operations", sub: "ops" }, { aud: "someone-else" }), "invalid token"],
    ["from another issuer", () => handMade({ role: "operations", sub: "ops" }, { iss: "evil-idp" }), "invalid token"],
    ["with an unknown role", () => handMade({ role: "admin", sub: "ops" }), "no valid role"],
    ["without a role", () => handMade({ sub: "ops" }), "no valid role"],
    ["a customer whose sub is not a UUID", () => handMade({ role: "customer", sub: "ada" }), "not a valid customer id"],
    ["unsigned (alg none)", async () => new UnsecuredJWT({ role: "operations", sub: "ops" }).setExpirationTime("1h").encode(), "invalid token"],
    ["signed with another secret", async () => (await createTokenService(testAuthConfig()).mint("operations", "ops", { ttl: "1h" })).token, "unknown key"],
    ["garbage", async () => "not.a.token", "invalid token"],
  ];
  for (const [what, make, message] of refused) {
    test(`401 UNAUTHENTICATED for a token ${what}`, async () => {
      expect(await refusal(await make())).toContain(message);
    });
  }

  test("mint refuses what verify would refuse", async () => {
    await expect(tokens.mint("customer", "ada", { ttl: "1h" })).rejects.toThrow("not a valid customer id");
  });

  test("rotation: the previous secret still verifies until its tokens expire, and no longer signs", async () => {
    const before = testAuthConfig();
    const old = createTokenService(before);
    const { token } = await old.mint("operations", "ops", { ttl: "1h" });
    const rotated = createTokenService(testAuthConfig({ AUTH_TOKEN_SECRET_PREVIOUS: before.tokenSecret }));
    expect(await rotated.verify(token)).toEqual({ role: "operations", sub: "ops" });
    const fresh = await rotated.mint("operations", "ops", { ttl: "1h" });
    expect(JSON.parse(Buffer.from(fresh.token.split(".")[0]!, "base64url").toString()).kid).not.toBe(old.kid);
    // Once the previous secret is dropped, its tokens stop working.
    const after = createTokenService(testAuthConfig());
    await expect(after.verify(token)).rejects.toThrow("unknown key");
  });
});
