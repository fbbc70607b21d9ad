/**
 * The raw trail a running fleet has behind it (issue #12's sustained run): a fix every 4 s for each of the database's
 * drivers over the last `hours`, up to `endsBefore`, written in bulk (not through the pipeline) in time order as the
 * apply writes it, so the primary key's pages split as they do under ingest. Positions wander around each driver's
 * home point; the H3-like cell is the one bench/trail/generate.sql uses.
 */
import type { Sql } from "../../lib/db.ts";

export interface PrefillResult {
  rows: number;
  seconds: number;
}

export async function prefillRawTrail(sql: Sql, options: { hours: number; endsBefore: Date; onHour?: (done: number) => void }): Promise<PrefillResult> {
  if (!(options.hours > 0)) throw new Error(`hours must be positive, got ${options.hours}`);
  const started = performance.now();
  const end = options.endsBefore.getTime();
  const start = end - options.hours * 3_600_000;
  await sql`select ensure_trail_partitions(${new Date(start)}, ${new Date(end)})`;
  // One statement per 10 minutes of fixes: a bounded transaction each, and progress to show.
  const stepMs = 600_000;
  let rows = 0;
  for (let from = start; from < end; from += stepMs) {
    const to = Math.min(end, from + stepMs);
    const result = await sql`
      with d as (
        select d.id, row_number() over (order by d.id) as k,
               40.70 + (hashtext(d.id::text) & 1023) / 10240.0 as lat0,
               -74.00 + ((hashtext(d.id::text) >> 10) & 1023) / 10240.0 as lon0
        from drivers d
      ), fixes as (
        select d.id, t.at, d.k,
               d.lat0 + 0.01 * sin(extract(epoch from t.at) / 600.0 + d.k) + (random() - 0.5) * 0.00005 as lat,
               d.lon0 + 0.01 * cos(extract(epoch from t.at) / 700.0 + d.k) + (random() - 0.5) * 0.00006 as lon
        from generate_series(${new Date(from)}::timestamptz, ${new Date(to - 1)}::timestamptz, interval '4 seconds') t(at)
        cross join d
      )
      insert into position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
      select f.id, f.at + (f.k % 4000) * interval '1 millisecond', f.lat, f.lon,
             613196571557000000 + floor(f.lat / 0.0015)::bigint * 100000 + floor(f.lon / 0.0015)::bigint,
             (random() * 45)::real, (random() * 360)::real, (3 + random() * 17)::real,
             f.at + (f.k % 4000) * interval '1 millisecond' + (60 + random() * 640)::int * interval '1 millisecond'
      from fixes f
      order by f.at, f.k`;
    rows += result.count;
    options.onHour?.(rows);
  }
  return { rows, seconds: (performance.now() - started) / 1000 };
}
