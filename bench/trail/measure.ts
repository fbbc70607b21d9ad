/** What bench:trail measures on one database: sizes of the trail's layouts, compaction cost, path-query latency. */
import type { Sql } from "../../lib/db.ts";
import { CLK_TCK, procSample } from "../support/process-stats.ts";

export interface Latency {
  p50Ms: number;
  p99Ms: number;
}

/** Bytes on disk (heap + indexes + TOAST, every partition) of a partitioned table, and the heap and indexes apart. */
export async function partitionedSize(sql: Sql, parent: string) {
  const [row] = await sql<{ total: string; heap: string; indexes: string; toast: string }[]>`
    select coalesce(sum(pg_total_relation_size(c.oid)), 0)::text as total,
           coalesce(sum(pg_relation_size(c.oid)), 0)::text as heap,
           coalesce(sum(pg_indexes_size(c.oid)), 0)::text as indexes,
           coalesce(sum(pg_total_relation_size(c.reltoastrelid)) filter (where c.reltoastrelid <> 0), 0)::text as toast
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = ${parent}::regclass`;
  return { total: Number(row!.total), heap: Number(row!.heap), indexes: Number(row!.indexes), toast: Number(row!.toast) };
}

/** A BRIN index on recorded_at over the raw trail, built and dropped: its size, for the "heap + BRIN" candidate. */
export async function brinSize(sql: Sql): Promise<number> {
  return sql.begin(async (tx) => {
    await tx`create index trail_bench_brin on position_trail using brin (recorded_at)`;
    const [row] = await tx<{ bytes: string }[]>`
      select coalesce(sum(pg_relation_size(i.inhrelid)), 0)::text as bytes
      from pg_inherits i where i.inhparent = 'trail_bench_brin'::regclass`;
    await tx`drop index trail_bench_brin`;
    return Number(row!.bytes);
  });
}

/** Sets the compression of every array column of the compact table (parent and partitions) to `method`. */
export async function setCompactCompression(sql: Sql, method: "pglz" | "lz4") {
  const tables = await sql<{ name: string }[]>`
    select 'position_trail_compact' as name
    union all
    select inhrelid::regclass::text from pg_inherits where inhparent = 'position_trail_compact'::regclass`;
  const columns = ["dt_ms", "dlat_e6", "dlon_e6", "h3", "speed_dkmh", "heading_ddeg", "accuracy_dm", "received_ms"];
  for (const { name } of tables) {
    await sql.unsafe(`alter table ${name} ${columns.map((c) => `alter column ${c} set compression ${method}`).join(", ")}`);
  }
}

/** Runs the compaction over every driver (as the worker does) and measures it, wall clock and the backend's CPU. */
export async function compactAll(sql: Sql, before: Date, driversPerStep: number) {
  return sql.reserve().then(async (conn) => {
    try {
      const { pid } = (await conn<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
      const cpuBefore = procSample(pid)?.cpuTicks;
      const started = performance.now();
      let after: string | null = null;
      let positions = 0;
      do {
        const [step]: { last_driver: string | null; positions: number }[] = await conn<{ last_driver: string | null; positions: number }[]>`
          select last_driver, positions from compact_trail_step(${after}::uuid, ${driversPerStep}, ${before})`;
        after = step!.last_driver;
        positions += step!.positions;
      } while (after !== null);
      const seconds = (performance.now() - started) / 1000;
      const cpuAfter = procSample(pid)?.cpuTicks;
      const cpuSeconds = cpuBefore !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuBefore) / CLK_TCK : undefined;
      return {
        positions,
        seconds,
        positionsPerSecond: positions / seconds,
        backendCpuSeconds: cpuSeconds,
        positionsPerCpuSecond: cpuSeconds ? positions / cpuSeconds : undefined,
      };
    } finally {
      conn.release();
    }
  });
}

export interface PathSample {
  driverId: string;
  from: Date;
  to: Date;
}

/** Runs `query` for each sample, one at a time, and reports client-side latency (round trip with the rows). */
export async function latency(samples: PathSample[], query: (s: PathSample) => Promise<unknown[]>): Promise<Latency & { rows: number }> {
  const times: number[] = [];
  let rows = 0;
  for (const s of samples) {
    const t = performance.now();
    rows += (await query(s)).length;
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  return { p50Ms: at(0.5), p99Ms: at(0.99), rows: Math.round(rows / samples.length) };
}
