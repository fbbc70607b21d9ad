import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { MIGRATIONS, readSeals } from "../../db/seal-migrations.ts";

const seals = readSeals();

describe("migrations are append-only", () => {
  test.each(seals.map((m) => [m.file, m] as const))("%s is sealed and unchanged", (_, m) => {
    expect(m.sealed, `${m.file} is not sealed: run \`bun run db:seal\` once it is final`).toBeDefined();
    expect(m.actual, `${m.file} changed after it landed: add a new migration instead`).toBe(m.sealed!);
  });

  test("every migration file is in the journal (drizzle would silently skip one that is not)", () => {
    const files = readdirSync(MIGRATIONS).filter((f) => f.endsWith(".sql")).sort();
    expect(files).toEqual(seals.map((m) => m.file));
  });
});
