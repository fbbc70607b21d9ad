/**
 * Migrations are append-only once they land: a database migrated in between would never receive a later edit, and
 * drizzle would not notice. db/migrations/sealed.sha256 holds the SHA-256 of every migration in the journal;
 * test/db/seal-migrations.test.ts fails when a sealed file changes or a journal entry is not sealed.
 *
 *   bun run db:seal     seals the journal's migrations that are not sealed yet (never rewrites an existing line)
 *
 * db:generate seals everything before it adds the next migration, so a migration is final once another follows it.
 */
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, readFileSync } from "node:fs";

export const MIGRATIONS = new URL("./migrations/", import.meta.url).pathname;
export const SEALS = `${MIGRATIONS}sealed.sha256`;

export interface MigrationSeal {
  file: string;
  /** The hash recorded when it was sealed; undefined if it never was. */
  sealed: string | undefined;
  actual: string;
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/** The journal's migrations, in order, with their recorded and actual hashes. */
export function readSeals(): MigrationSeal[] {
  const journal = JSON.parse(readFileSync(`${MIGRATIONS}meta/_journal.json`, "utf8")) as { entries: { tag: string }[] };
  const recorded = new Map<string, string>();
  if (existsSync(SEALS)) {
    for (const line of readFileSync(SEALS, "utf8").split("\n")) {
      const match = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
      if (match) recorded.set(match[2]!, match[1]!);
    }
  }
  return journal.entries.map(({ tag }) => {
    const file = `${tag}.sql`;
    return { file, sealed: recorded.get(file), actual: sha256(`${MIGRATIONS}${file}`) };
  });
}

/** Appends a seal for every unsealed migration; returns their file names. */
export function sealNew(): string[] {
  const fresh = readSeals().filter((m) => m.sealed === undefined);
  if (fresh.length > 0) appendFileSync(SEALS, fresh.map((m) => `${m.actual}  ${m.file}\n`).join(""));
  return fresh.map((m) => m.file);
}

if (import.meta.main) {
  const sealed = sealNew();
  console.log(sealed.length > 0 ? `sealed ${sealed.join(", ")}` : "every migration was sealed already");
  const changed = readSeals().filter((m) => m.sealed !== m.actual);
  for (const m of changed) console.error(`${m.file} changed after it was sealed: add a new migration instead`);
  process.exit(changed.length > 0 ? 1 : 0);
}
