/**
 * What a sustained `bench:e2e` run reports per window (issue #12): the database's side of steady state (driver_state's
 * updates, HOT ratio, dead tuples, autovacuum runs; WAL bytes; table and index growth) sampled at each window's edges.
 */
import type { Sql } from "../../lib/db.ts";
import { partitionedSize } from "../trail/measure.ts";

export interface DatabaseSample {
  /** Server-wide WAL position in bytes (every database on the server writes to the same WAL). */
  walBytes: number;
  driverState: {
    updates: number;
    hotUpdates: number;
    deadTuples: number;
    liveTuples: number;
    autovacuums: number;
    autoanalyzes: number;
    /** Heap + indexes + TOAST. */
    bytes: number;
  };
  trailRawBytes: number;
  trailCompactBytes: number;
  databaseBytes: number;
}

export async function sampleDatabase(sql: Sql): Promise<DatabaseSample> {
  const [row] = await sql<
    { wal: string; upd: string; hot: string; dead: string; live: string; av: string; aa: string; ds: string; db: string }[]
  >`
    select (pg_current_wal_lsn() - '0/0'::pg_lsn)::text as wal,
           n_tup_upd::text as upd, n_tup_hot_upd::text as hot, n_dead_tup::text as dead, n_live_tup::text as live,
           autovacuum_count::text as av, autoanalyze_count::text as aa,
           pg_total_relation_size('driver_state')::text as ds,
           pg_database_size(current_database())::text as db
    from pg_stat_user_tables where relid = 'driver_state'::regclass`;
  const [raw, compact] = await Promise.all([partitionedSize(sql, "position_trail"), partitionedSize(sql, "position_trail_compact")]);
  return {
    walBytes: Number(row!.wal),
    driverState: {
      updates: Number(row!.upd),
      hotUpdates: Number(row!.hot),
      deadTuples: Number(row!.dead),
      liveTuples: Number(row!.live),
      autovacuums: Number(row!.av),
      autoanalyzes: Number(row!.aa),
      bytes: Number(row!.ds),
    },
    trailRawBytes: raw.total,
    trailCompactBytes: compact.total,
    databaseBytes: Number(row!.db),
  };
}

export interface DatabaseWindow {
  walBytesPerPosition: number;
  driverStateUpdates: number;
  /** HOT updates / updates in the window (statistics are flushed by backends with a lag of up to ~1 s). */
  hotRatio: number;
  deadTuples: number;
  autovacuums: number;
  autoanalyzes: number;
  driverStateGrowthBytes: number;
  trailRawGrowthBytes: number;
  trailCompactGrowthBytes: number;
  databaseGrowthBytes: number;
  databaseBytes: number;
}

/** The window between two samples, for `applied` positions applied in it. */
export function databaseWindow(a: DatabaseSample, b: DatabaseSample, applied: number): DatabaseWindow {
  const updates = b.driverState.updates - a.driverState.updates;
  return {
    walBytesPerPosition: applied > 0 ? (b.walBytes - a.walBytes) / applied : Number.NaN,
    driverStateUpdates: updates,
    hotRatio: updates > 0 ? (b.driverState.hotUpdates - a.driverState.hotUpdates) / updates : Number.NaN,
    deadTuples: b.driverState.deadTuples,
    autovacuums: b.driverState.autovacuums - a.driverState.autovacuums,
    autoanalyzes: b.driverState.autoanalyzes - a.driverState.autoanalyzes,
    driverStateGrowthBytes: b.driverState.bytes - a.driverState.bytes,
    trailRawGrowthBytes: b.trailRawBytes - a.trailRawBytes,
    trailCompactGrowthBytes: b.trailCompactBytes - a.trailCompactBytes,
    databaseGrowthBytes: b.databaseBytes - a.databaseBytes,
    databaseBytes: b.databaseBytes,
  };
}
