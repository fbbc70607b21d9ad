-- A compact trail (issue #12): closed hours of the raw trail are rolled up into one row per driver per contiguous
-- stretch of an hour (a "segment": up to 900 fixes at 4 s), holding its fixes as delta-encoded arrays of small
-- integers. The raw table stays as it was, so the hot apply path is untouched; compaction moves closed hours out of
-- it. driver_path() reads both parts, in order, each fix once. docs/trail.md has the layout and the measurements.
--
-- Quantisation (the round trip is exact to it): time to the millisecond, latitude and longitude to 1e-6 degree,
-- speed to 0.1 km/h, heading to 0.1 degree, accuracy to 0.1 m (clamped to 3276.7), received_at to the millisecond.
CREATE TABLE position_trail_compact (
  driver_id     uuid        NOT NULL,
  first_at      timestamptz NOT NULL, -- the segment's first fix; every fix of it lies in the same UTC hour
  last_at       timestamptz NOT NULL, -- its last fix
  fixes         int         NOT NULL,
  lat0_e6       int         NOT NULL, -- the first fix, micro-degrees
  lon0_e6       int         NOT NULL,
  dt_ms         smallint[]  NOT NULL, -- ms since the previous fix (0 for the first)
  dlat_e6       smallint[]  NOT NULL, -- micro-degrees since the previous fix (0 for the first)
  dlon_e6       smallint[]  NOT NULL,
  h3            bigint[]    NOT NULL, -- the cell; NULL where it is the previous fix's (a null costs one bitmap bit)
  speed_dkmh    smallint[]  NOT NULL, -- 0.1 km/h; NULL where unknown
  heading_ddeg  smallint[]  NOT NULL, -- 0.1 degree
  accuracy_dm   smallint[]  NOT NULL, -- 0.1 m
  received_ms   int[]       NOT NULL, -- received_at - recorded_at, ms
  PRIMARY KEY (driver_id, first_at)
) PARTITION BY RANGE (first_at);
--> statement-breakpoint

-- Daily partitions, as the raw trail's, so retention is a DROP here too. Creates the missing ones covering [p_from, p_to].
CREATE FUNCTION ensure_compact_trail_partitions(p_from timestamptz, p_to timestamptz) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_day date;
  v_name text;
  v_created int := 0;
BEGIN
  IF p_from IS NULL OR p_to IS NULL THEN
    RETURN 0;
  END IF;
  FOR v_day IN
    SELECT generate_series((p_from AT TIME ZONE 'UTC')::date, (p_to AT TIME ZONE 'UTC')::date, interval '1 day')::date
  LOOP
    v_name := 'position_trail_compact_' || to_char(v_day, 'YYYYMMDD');
    CONTINUE WHEN to_regclass(v_name) IS NOT NULL;
    PERFORM pg_advisory_xact_lock(hashtext('position_trail_compact_partitions'));
    CONTINUE WHEN to_regclass(v_name) IS NOT NULL;
    EXECUTE format('CREATE TABLE %I PARTITION OF position_trail_compact FOR VALUES FROM (%L) TO (%L)',
      v_name, (v_day::timestamp AT TIME ZONE 'UTC'), ((v_day + 1)::timestamp AT TIME ZONE 'UTC'));
    v_created := v_created + 1;
  END LOOP;
  RETURN v_created;
END $$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION ensure_compact_trail_partitions(timestamptz, timestamptz) FROM PUBLIC;
--> statement-breakpoint

-- Drops the compact partitions that end before the start of (today - p_keep_days), as drop_old_trail_partitions.
CREATE FUNCTION drop_old_compact_trail_partitions(p_keep_days int DEFAULT NULL) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_keep int := coalesce(p_keep_days, (SELECT trail_retention_days FROM tracking_settings WHERE id = 1));
  v_cutoff date := (now() AT TIME ZONE 'UTC')::date - v_keep;
  v_part record;
  v_dropped int := 0;
BEGIN
  FOR v_part IN
    SELECT c.relname
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'position_trail_compact'::regclass
      AND c.relname ~ '^position_trail_compact_\d{8}$'
      AND to_date(substr(c.relname, 24), 'YYYYMMDD') < v_cutoff
  LOOP
    EXECUTE format('DROP TABLE %I', v_part.relname);
    v_dropped := v_dropped + 1;
  END LOOP;
  RETURN v_dropped;
END $$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION drop_old_compact_trail_partitions(int) FROM PUBLIC;
--> statement-breakpoint

-- The worker's upkeep, now for both parts of the trail (0010's contract: no argument, retention from the settings).
CREATE OR REPLACE FUNCTION trail_upkeep() RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT ensure_trail_partitions(now(), now() + interval '1 day')
       + ensure_compact_trail_partitions(now(), now() + interval '1 day')
       + drop_old_trail_partitions()
       + drop_old_compact_trail_partitions();
$$;
--> statement-breakpoint

-- A segment's fixes in the raw trail's shape, in order.
CREATE FUNCTION trail_segment_fixes(c position_trail_compact)
RETURNS TABLE (driver_id uuid, recorded_at timestamptz, lat double precision, lon double precision, h3 bigint,
               speed_kmh real, heading_deg real, accuracy_m real, received_at timestamptz)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT c.driver_id, r.at, r.lat_e6::float8 / 1000000, r.lon_e6::float8 / 1000000,
         first_value(r.cell) OVER (PARTITION BY r.cell_run ORDER BY r.i),
         (r.speed::float8 / 10)::real, (r.heading::float8 / 10)::real, (r.accuracy::float8 / 10)::real,
         r.at + r.received * interval '1 millisecond'
  FROM (
    SELECT f.i, f.cell, f.speed, f.heading, f.accuracy, f.received,
           c.first_at + sum(f.dt) OVER w * interval '1 millisecond' AS at,
           c.lat0_e6 + sum(f.dlat) OVER w AS lat_e6,
           c.lon0_e6 + sum(f.dlon) OVER w AS lon_e6,
           count(f.cell) OVER w AS cell_run
    FROM unnest(c.dt_ms, c.dlat_e6, c.dlon_e6, c.h3, c.speed_dkmh, c.heading_ddeg, c.accuracy_dm, c.received_ms)
         WITH ORDINALITY AS f(dt, dlat, dlon, cell, speed, heading, accuracy, received, i)
    WINDOW w AS (ORDER BY f.i ROWS UNBOUNDED PRECEDING)
  ) r
  ORDER BY r.i
$$;
--> statement-breakpoint

-- A driver's path over [p_from, p_to], in the raw trail's shape, from both parts, ordered, each fix once.
CREATE FUNCTION driver_path(p_driver uuid, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (driver_id uuid, recorded_at timestamptz, lat double precision, lon double precision, h3 bigint,
               speed_kmh real, heading_deg real, accuracy_m real, received_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT DISTINCT ON (p.recorded_at)
         p.driver_id, p.recorded_at, p.lat, p.lon, p.h3, p.speed_kmh, p.heading_deg, p.accuracy_m, p.received_at
  FROM (
    SELECT t.*, 0 AS part
    FROM position_trail t
    WHERE t.driver_id = p_driver AND t.recorded_at >= p_from AND t.recorded_at <= p_to
    UNION ALL
    SELECT f.*, 1
    FROM position_trail_compact c CROSS JOIN LATERAL trail_segment_fixes(c) f
    -- A segment lies within one hour: this bounds the index range scan on (driver_id, first_at).
    WHERE c.driver_id = p_driver AND c.first_at <= p_to AND c.first_at > p_from - interval '1 hour'
      AND c.last_at >= p_from AND f.recorded_at >= p_from AND f.recorded_at <= p_to
  ) p
  ORDER BY p.recorded_at, p.part
$$;
--> statement-breakpoint

-- An order's route: its driver's path from assignment to delivery (or cancellation, or now).
CREATE FUNCTION order_route(p_order uuid)
RETURNS TABLE (driver_id uuid, recorded_at timestamptz, lat double precision, lon double precision, h3 bigint,
               speed_kmh real, heading_deg real, accuracy_m real, received_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT p.*
  FROM orders o
  CROSS JOIN LATERAL driver_path(o.driver_id, coalesce(o.assigned_at, o.created_at),
                                 coalesce(o.delivered_at, o.cancelled_at, now())) p
  WHERE o.id = p_order AND o.driver_id IS NOT NULL
  ORDER BY p.recorded_at
$$;
--> statement-breakpoint

-- Every fix of the trail, both parts (for readers that count or scan; a driver's range should use driver_path).
CREATE VIEW trail_positions AS
  SELECT t.driver_id, t.recorded_at, t.lat, t.lon, t.h3, t.speed_kmh, t.heading_deg, t.accuracy_m, t.received_at
  FROM position_trail t
  UNION ALL
  SELECT f.*
  FROM position_trail_compact c CROSS JOIN LATERAL trail_segment_fixes(c) f
  WHERE NOT EXISTS (SELECT 1 FROM position_trail t WHERE t.driver_id = f.driver_id AND t.recorded_at = f.recorded_at);
--> statement-breakpoint

-- Hours closed for at least 10 minutes are compacted: the raw part keeps the current hour and the previous one
-- until 10 past. A fix that still arrives for a compacted hour (a phone's backlog) lands raw and is merged on the next run.
CREATE FUNCTION trail_compaction_cutoff() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT date_trunc('hour', (now() - interval '10 minutes') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;
--> statement-breakpoint

-- A value in tenths as a smallint, clamped to its range; NULL stays NULL (greatest/least alone would clamp a NULL).
-- Not STRICT and one expression, so the planner inlines it (a STRICT call costs ~0.5 us per value, 10x the work).
CREATE FUNCTION trail_tenths(v double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN v IS NOT NULL THEN greatest(least(round(v * 10), 32767), -32768)::smallint END
$$;
--> statement-breakpoint

-- Milliseconds from p_from to p_to as an int, clamped; NULL if either is (inlined, as trail_tenths).
CREATE FUNCTION trail_offset_ms(p_from timestamptz, p_to timestamptz) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_to - p_from IS NOT NULL
              THEN greatest(least(round(date_part('epoch', p_to - p_from) * 1000), 2147483647), -2147483648)::int END
$$;
--> statement-breakpoint

-- One step of compaction: the raw fixes before p_before (default: the cutoff; always truncated to an hour) of the
-- next p_drivers drivers after p_after (by id) move into segments, merged with that hour's existing segments of the
-- driver, each fix once. Returns the last driver of the step (NULL when there are no more) and what moved. One
-- transaction per step; steps serialise on an advisory lock; rerunning moves nothing (the raw part is then empty
-- before the cutoff). A fix inserted meanwhile by the apply stays raw (DELETE … RETURNING sees only what was
-- committed) and is merged on the next run.
CREATE FUNCTION compact_trail_step(p_after uuid DEFAULT NULL, p_drivers int DEFAULT 1000,
                                   p_before timestamptz DEFAULT NULL)
RETURNS TABLE (last_driver uuid, positions int, segments int)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET TimeZone = 'UTC' SET work_mem = '256MB' AS $$
DECLARE
  v_before timestamptz := date_trunc('hour', least(coalesce(p_before, trail_compaction_cutoff()), now()));
  v_ids uuid[];
  v_part record;
BEGIN
  SELECT array_agg(d.id ORDER BY d.id) INTO v_ids
  FROM (SELECT id FROM drivers WHERE p_after IS NULL OR id > p_after ORDER BY id LIMIT p_drivers) d;
  IF v_ids IS NULL THEN
    RETURN QUERY SELECT NULL::uuid, 0, 0;
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('position_trail_compaction'));
  -- Every day of the raw trail has its compact twin (a catalogue look-up when they exist).
  FOR v_part IN
    SELECT to_date(substr(c.relname, 16), 'YYYYMMDD') AS day
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'position_trail'::regclass AND c.relname ~ '^position_trail_\d{8}$'
  LOOP
    CONTINUE WHEN v_part.day::timestamp AT TIME ZONE 'UTC' >= v_before;
    PERFORM ensure_compact_trail_partitions(v_part.day::timestamp AT TIME ZONE 'UTC', v_part.day::timestamp AT TIME ZONE 'UTC');
  END LOOP;

  RETURN QUERY
  WITH moved AS (
    DELETE FROM position_trail t
    WHERE t.driver_id = ANY (v_ids) AND t.recorded_at < v_before
    RETURNING t.*
  ), hours AS (
    SELECT DISTINCT m.driver_id, date_trunc('hour', m.recorded_at) AS hour FROM moved m
  ), reopened AS (
    DELETE FROM position_trail_compact c USING hours h
    WHERE c.driver_id = h.driver_id AND c.first_at >= h.hour AND c.first_at < h.hour + interval '1 hour'
    RETURNING c.*
  ), fixes AS (
    SELECT m.driver_id, date_trunc('milliseconds', m.recorded_at) AS recorded_at, m.lat, m.lon, m.h3, m.speed_kmh,
           m.heading_deg, m.accuracy_m, m.received_at, 0 AS part
    FROM moved m
    UNION ALL
    SELECT f.*, 1 FROM reopened r CROSS JOIN LATERAL trail_segment_fixes(r::position_trail_compact) f
  ), quantised AS (
    -- A fix both compacted and raw (possible only if a row was written around the apply) is kept once: compacted.
    -- One sort, on (driver, hour, time), serves this and every window below.
    SELECT DISTINCT ON (x.driver_id, date_trunc('hour', x.recorded_at), x.recorded_at)
           x.driver_id, x.recorded_at, date_trunc('hour', x.recorded_at) AS hour,
           round(x.lat * 1000000)::int AS lat_e6, round(x.lon * 1000000)::int AS lon_e6, x.h3,
           trail_tenths(x.speed_kmh) AS speed, trail_tenths(x.heading_deg) AS heading,
           trail_tenths(x.accuracy_m) AS accuracy,
           trail_offset_ms(x.recorded_at, x.received_at) AS received
    FROM fixes x
    ORDER BY x.driver_id, date_trunc('hour', x.recorded_at), x.recorded_at, x.part DESC
  ), deltas AS (
    SELECT q.*,
           round(date_part('epoch', q.recorded_at - lag(q.recorded_at) OVER w) * 1000)::int AS dt,
           q.lat_e6 - lag(q.lat_e6) OVER w AS dlat,
           q.lon_e6 - lag(q.lon_e6) OVER w AS dlon,
           q.h3 = lag(q.h3) OVER w AS same_cell
    FROM quantised q
    WINDOW w AS (PARTITION BY q.driver_id, q.hour ORDER BY q.recorded_at)
  ), starts AS (
    -- A segment starts at the hour's first fix and wherever a delta would not fit a smallint (a gap, a jump).
    SELECT d.*, (d.dt IS NULL OR d.dt > 32767 OR abs(d.dlat) > 32767 OR abs(d.dlon) > 32767) AS first
    FROM deltas d
  ), numbered AS (
    SELECT s.*, count(*) FILTER (WHERE s.first) OVER (PARTITION BY s.driver_id, s.hour ORDER BY s.recorded_at ROWS UNBOUNDED PRECEDING) AS seg
    FROM starts s
  ), written AS (
    INSERT INTO position_trail_compact (driver_id, first_at, last_at, fixes, lat0_e6, lon0_e6, dt_ms, dlat_e6, dlon_e6,
                                        h3, speed_dkmh, heading_ddeg, accuracy_dm, received_ms)
    SELECT n.driver_id, min(n.recorded_at), max(n.recorded_at), count(*)::int,
           max(n.lat_e6) FILTER (WHERE n.first), max(n.lon_e6) FILTER (WHERE n.first),
           array_agg(CASE WHEN n.first THEN 0 ELSE n.dt END::smallint ORDER BY n.recorded_at),
           array_agg(CASE WHEN n.first THEN 0 ELSE n.dlat END::smallint ORDER BY n.recorded_at),
           array_agg(CASE WHEN n.first THEN 0 ELSE n.dlon END::smallint ORDER BY n.recorded_at),
           array_agg(CASE WHEN n.first OR NOT n.same_cell THEN n.h3 END ORDER BY n.recorded_at),
           array_agg(n.speed ORDER BY n.recorded_at),
           array_agg(n.heading ORDER BY n.recorded_at),
           array_agg(n.accuracy ORDER BY n.recorded_at),
           array_agg(n.received ORDER BY n.recorded_at)
    FROM numbered n
    GROUP BY n.driver_id, n.hour, n.seg
    RETURNING 1
  )
  SELECT v_ids[array_upper(v_ids, 1)], (SELECT count(*) FROM moved)::int, (SELECT count(*) FROM written)::int;
END $$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION compact_trail_step(uuid, int, timestamptz) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION compact_trail_step(uuid, int, timestamptz) TO tracking_worker;
--> statement-breakpoint

SELECT ensure_compact_trail_partitions(now() - interval '1 day', now() + interval '2 days');
