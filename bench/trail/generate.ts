/** Bulk generation of a realistic trail day in SQL (bench/trail/generate.sql), not through the pipeline. */
import { readFileSync } from "node:fs";
import type { Sql } from "../../lib/db.ts";

const GENERATE_SQL = readFileSync(new URL("./generate.sql", import.meta.url), "utf8");

/** Inserts `drivers` new drivers and a day of raw trail for each, starting at `day` (UTC midnight); returns the rows. */
export async function generateTrailDay(sql: Sql, options: { drivers: number; day: Date }): Promise<number> {
  if (!Number.isInteger(options.drivers) || options.drivers < 1) throw new Error(`drivers must be a positive integer`);
  const day = options.day.toISOString();
  await sql`select ensure_trail_partitions(${day}::timestamptz, ${day}::timestamptz)`;
  const text = GENERATE_SQL.replaceAll(":drivers", String(options.drivers)).replaceAll("(:day)", `('${day}')`);
  const result = await sql.unsafe(text);
  return result.count;
}
