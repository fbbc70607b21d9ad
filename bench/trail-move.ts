/**
 * bench:trail-move — what moving a closed hour into the compact trail costs, by how the raw rows leave: deleted row by
 * row (compact_trail_step, shipped since 0014) or read and then dropped with their partition (the same step with its
 * DELETE … RETURNING turned into a SELECT, followed by a TRUNCATE, as hourly raw partitions would allow).
 *
 * A day of trail for --drivers drivers is generated in SQL into a scratch database (bench/trail/generate.sql) and kept
 * aside; each run restores it and compacts it both ways, alternating, measuring the backend's CPU, wall time and the
 * WAL written, the cleanup (VACUUM after the delete, TRUNCATE after the select) included.
 * Writes bench/results/trail-move-<time>.json and prints a table.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";
import { CLK_TCK, procSample } from "./support/process-stats.ts";
import { resultStem } from "./support/plot.ts";
import { generateTrailDay } from "./trail/generate.ts";

const { values: args } = parseArgs({
  options: {
    drivers: { type: "string", default: "50" },
    runs: { type: "string", default: "3" },
    step: { type: "string", default: "500" },
  },
});
const DRIVERS = Number(args.drivers);
const RUNS = Number(args.runs);
const STEP = Number(args.step);
const HOUR = 3_600_000;
const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);

interface Cost {
  wallS: number;
  cpuS: number;
  walBytes: number;
}

/** Runs `body` on `conn` and returns the backend's CPU, the wall time and the WAL it wrote. */
async function measured(conn: Sql, body: () => Promise<unknown>): Promise<Cost> {
  const { pid } = (await conn<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
  const { lsn } = (await conn<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`)[0]!;
  const cpu0 = procSample(pid)!.cpuTicks;
  const started = performance.now();
  await body();
  const wallS = (performance.now() - started) / 1000;
  const cpuS = (procSample(pid)!.cpuTicks - cpu0) / CLK_TCK;
  const { wal } = (await conn<{ wal: string }[]>`select (pg_current_wal_lsn() - ${lsn}::pg_lsn)::text as wal`)[0]!;
  return { wallS, cpuS, walBytes: Number(wal) };
}

async function compactAll(conn: Sql, fn: string, before: Date) {
  let after: string | null = null;
  do {
    const [step] = await conn.unsafe(`select last_driver from ${fn}($1::uuid, $2, $3)`, [after, STEP, before.toISOString()]);
    after = step!.last_driver as string | null;
  } while (after !== null);
}

const scratch = await createScratchDatabase(`bench_trail_move_${process.pid}`);
const sql = connectDatabase(scratch.url, { max: 2, application: "bench-trail-move" });
try {
  const day = new Date(Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 2 * 24 * HOUR);
  log(`generating ${DRIVERS} drivers x a day (${day.toISOString().slice(0, 10)}) in SQL`);
  const positions = await generateTrailDay(sql, { drivers: DRIVERS, day });
  await sql`create unlogged table trail_source as select * from position_trail`;
  await sql`select ensure_compact_trail_partitions(${day}, ${day})`;
  // The shipped step with its DELETE … RETURNING of the raw rows turned into a SELECT (the rows stay for a TRUNCATE).
  const { def } = (await sql<{ def: string }[]>`select pg_get_functiondef('compact_trail_step'::regproc) as def`)[0]!;
  const selecting = def
    .replace("FUNCTION public.compact_trail_step(", "FUNCTION public.compact_trail_step_selecting(")
    .replace(/DELETE FROM position_trail t\s+WHERE (.*?)\s+RETURNING t\.\*/s, "SELECT t.* FROM position_trail t WHERE $1");
  if (!selecting.includes("compact_trail_step_selecting") || selecting.includes("DELETE FROM position_trail t")) {
    throw new Error("compact_trail_step's text changed: the selecting variant could not be derived");
  }
  await sql.unsafe(selecting);
  const before = new Date(day.getTime() + 24 * HOUR);

  const runs: { run: number; delete: { compact: Cost; cleanup: Cost }; truncate: { compact: Cost; cleanup: Cost } }[] = [];
  for (let run = 1; run <= RUNS; run++) {
    const one: Partial<(typeof runs)[number]> = { run };
    for (const variant of ["delete", "truncate"] as const) {
      await sql`truncate position_trail, position_trail_compact`;
      await sql`insert into position_trail select * from trail_source order by recorded_at`;
      await sql`vacuum analyze position_trail`;
      const conn = await sql.reserve();
      try {
        if (variant === "delete") {
          const compact = await measured(conn, () => compactAll(conn, "compact_trail_step", before));
          const cleanup = await measured(conn, () => conn`vacuum position_trail`);
          one.delete = { compact, cleanup };
        } else {
          const compact = await measured(conn, () => compactAll(conn, "compact_trail_step_selecting", before));
          const cleanup = await measured(conn, () => conn`truncate position_trail`);
          one.truncate = { compact, cleanup };
        }
      } finally {
        conn.release();
      }
      log(`run ${run}/${RUNS}: ${variant} done`);
    }
    runs.push(one as (typeof runs)[number]);
  }

  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { min: s[0]!, median: s[Math.floor((s.length - 1) / 2)]!, max: s[s.length - 1]! };
  };
  const per = (variant: "delete" | "truncate") => ({
    positionsPerCpuSecond: stats(runs.map((r) => positions / (r[variant].compact.cpuS + r[variant].cleanup.cpuS))),
    walBytesPerPosition: stats(runs.map((r) => (r[variant].compact.walBytes + r[variant].cleanup.walBytes) / positions)),
    wallSeconds: stats(runs.map((r) => r[variant].compact.wallS + r[variant].cleanup.wallS)),
  });
  const summary = { delete: per("delete"), truncate: per("truncate") };
  const stem = resultStem("trail-move");
  writeFileSync(`${stem}.json`, JSON.stringify({ at: new Date().toISOString(), drivers: DRIVERS, positions, step: STEP, runs, summary }, null, 2));
  const mmm = (s: { min: number; median: number; max: number }, digits = 0) =>
    `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`;
  console.log(`\n${positions} positions, ${RUNS} alternating runs (min / median / max)\n`);
  console.log("| raw rows leave by | positions per backend CPU-second | WAL bytes per position | wall s |");
  console.log("|---|---|---|---|");
  console.log(`| DELETE, then VACUUM (shipped) | ${mmm(summary.delete.positionsPerCpuSecond)} | ${mmm(summary.delete.walBytesPerPosition)} | ${mmm(summary.delete.wallSeconds, 1)} |`);
  console.log(`| SELECT, then TRUNCATE | ${mmm(summary.truncate.positionsPerCpuSecond)} | ${mmm(summary.truncate.walBytesPerPosition)} | ${mmm(summary.truncate.wallSeconds, 1)} |`);
  console.log(`\n${stem}.json`);
} finally {
  await sql.end();
  await scratch.drop();
}
