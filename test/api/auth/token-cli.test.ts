/** `bun run token`: the IdP stand-in's tokens verify with the API's secret; bad input is refused with a reason. */
import { describe, expect, test } from "bun:test";
import { createTokenService } from "../../../api/auth/tokens.ts";
import { testAuthConfig } from "../support/auth.ts";

const root = new URL("../../../", import.meta.url).pathname;
const cfg = testAuthConfig();

async function mint(...args: string[]) {
  const proc = Bun.spawn(["bun", "api/auth/token-cli.ts", ...args], {
    cwd: root,
    env: { ...process.env, AUTH_TOKEN_SECRET: cfg.tokenSecret },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code, stdout: stdout.trim(), stderr };
}

describe("bun run token", () => {
  test("mints an operations token for 12 h that the API's secret verifies", async () => {
    const { code, stdout } = await mint("--role", "operations", "--sub", "ops-demo", "--ttl", "12h", "--json");
    expect(code).toBe(0);
    const minted = JSON.parse(stdout) as { token: string; expires_at: string };
    expect(await createTokenService(cfg).verify(minted.token)).toEqual({ role: "operations", sub: "ops-demo" });
    expect(Math.abs(Date.parse(minted.expires_at) - (Date.now() + 12 * 3600_000))).toBeLessThan(60_000);
  });

  test.each([
    [["--role", "admin", "--sub", "x"], 2, "--role must be one of"],
    [["--role", "customer"], 2, "usage:"],
    [["--role", "customer", "--sub", "ada"], 1, "not a valid customer id"],
  ])("%p exits %d: %s", async (args, code, message) => {
    const result = await mint(...args);
    expect(result.code).toBe(code);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe("");
  });
});
