import { existsSync, readFileSync } from "node:fs";
import { defineConfig } from "drizzle-kit";

/**
 * The owner's URL: from the environment, else the one `bin/stack up` wrote (.stack/tools.env). No password is written
 * here; `generate` needs no connection, so without either the URL has none and only commands that connect fail.
 */
function databaseUrl(): string {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  const toolsEnv = new URL("./.stack/tools.env", import.meta.url);
  const line = existsSync(toolsEnv) ? /^DATABASE_URL=(.*)$/m.exec(readFileSync(toolsEnv, "utf8")) : null;
  return line?.[1] ?? "postgresql://tracking_owner@127.0.0.1:5432/food_delivery";
}

export default defineConfig({
  dialect: "postgresql",
  schema: "./db/schema.ts",
  out: "./db/migrations",
  dbCredentials: { url: databaseUrl() },
});
