/**
 * `bun run token -- --role operations --sub ops-demo --ttl 12h`: the identity provider stand-in. The system runs no
 * login service; this mints the bearer tokens an IdP would, with AUTH_TOKEN_SECRET (bin/stack's .stack/secrets.env),
 * for the demo, curl and scripts. Prints the token alone (TOKEN=$(bun run --silent token -- …)), or JSON with --json.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseAuthConfig } from "../../lib/config.ts";
import { ROLES, isRole } from "./principal.ts";
import { createTokenService } from "./tokens.ts";

const USAGE = `usage: bun run token -- --role <${ROLES.join("|")}> --sub <uuid or operator name> [--ttl 1h] [--json]`;

/** The stack's secrets when the shell did not export them (a developer's terminal). */
function stackEnv(): Record<string, string | undefined> {
  const env = { ...process.env };
  if (env.AUTH_TOKEN_SECRET) return env;
  try {
    const text = readFileSync(new URL("../../.stack/secrets.env", import.meta.url), "utf8");
    for (const line of text.split("\n")) {
      const match = /^(AUTH_[A-Z_]+)=(.*)$/.exec(line);
      if (match && env[match[1]!] === undefined) env[match[1]!] = match[2];
    }
  } catch {
    // No stack here: parseAuthConfig names the missing variable.
  }
  return env;
}

const { values } = parseArgs({
  options: {
    role: { type: "string" },
    sub: { type: "string" },
    ttl: { type: "string", default: "1h" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});

if (values.help || !values.role || !values.sub) {
  console.error(USAGE);
  process.exit(values.help ? 0 : 2);
}
if (!isRole(values.role)) {
  console.error(`--role must be one of ${ROLES.join(", ")}\n${USAGE}`);
  process.exit(2);
}

try {
  const tokens = createTokenService(parseAuthConfig(stackEnv()));
  const ttl = /^\d+$/.test(values.ttl) ? Number(values.ttl) : values.ttl;
  const { token, expiresAt } = await tokens.mint(values.role, values.sub, { ttl });
  console.log(values.json ? JSON.stringify({ token, role: values.role, sub: values.sub, expires_at: expiresAt }) : token);
} catch (error) {
  console.error(`token: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
