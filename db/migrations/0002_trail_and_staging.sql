-- The settings row, the partitioned position trail with its retention, and the staging table COPY writes into.

ALTER TABLE tracking_settings ADD CONSTRAINT tracking_settings_one_row CHECK (id = 1);
--> statement-breakpoint
INSERT INTO tracking_settings (id) VALUES (1) ON CONFLICT DO NOTHING;
--> statement-breakpoint
-- Every applied batch rewrites its drivers' rows: leave room on each page so those updates can stay HOT.
ALTER TABLE driver_state SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);
--> statement-breakpoint

-- Every accepted position, one partition per UTC day, so retention is a DROP, not a DELETE.
CREATE TABLE position_trail (
  driver_id   uuid             NOT NULL,
  recorded_at timestamptz      NOT NULL,
  lat         double precision NOT NULL,
  lon         double precision NOT NULL,
  h3          bigint           NOT NULL,
  speed_kmh   real,
  heading_deg real,
  accuracy_m  real,
  received_at timestamptz,
  PRIMARY KEY (driver_id, recorded_at)
) PARTITION BY RANGE (recorded_at);
--> statement-breakpoint

-- Creates the missing daily partitions covering [p_from, p_to]. Concurrent callers serialise on an advisory lock,
-- taken only when a partition is really missing (the common case is a catalogue look-up and nothing else).
CREATE FUNCTION ensure_trail_partitions(p_from timestamptz, p_to timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
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
    v_name := 'position_trail_' || to_char(v_day, 'YYYYMMDD');
    CONTINUE WHEN to_regclass(v_name) IS NOT NULL;
    PERFORM pg_advisory_xact_lock(hashtext('position_trail_partitions'));
    CONTINUE WHEN to_regclass(v_name) IS NOT NULL;
    EXECUTE format(
      'CREATE TABLE %I PARTITION OF position_trail FOR VALUES FROM (%L) TO (%L) WITH (autovacuum_enabled = on)',
      v_name, (v_day::timestamp AT TIME ZONE 'UTC'), ((v_day + 1)::timestamp AT TIME ZONE 'UTC'));
    v_created := v_created + 1;
  END LOOP;
  RETURN v_created;
END $$;
--> statement-breakpoint

-- Drops the daily partitions that end before the start of (today - p_keep_days); returns how many.
CREATE FUNCTION drop_old_trail_partitions(p_keep_days int DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
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
    WHERE i.inhparent = 'position_trail'::regclass
      AND c.relname ~ '^position_trail_\d{8}$'
      AND to_date(substr(c.relname, 16), 'YYYYMMDD') < v_cutoff
  LOOP
    EXECUTE format('DROP TABLE %I', v_part.relname);
    v_dropped := v_dropped + 1;
  END LOOP;
  RETURN v_dropped;
END $$;
--> statement-breakpoint

SELECT ensure_trail_partitions(now() - interval '1 day', now() + interval '2 days');
--> statement-breakpoint

-- The shape of a staged batch. UNLOGGED: staging is scratch space, never worth a WAL write. Each worker session
-- stages into its own temporary copy (open_position_staging), which shadows this table by name, is private to the
-- session (concurrent workers never see each other's rows) and is emptied at commit without a DELETE.
CREATE UNLOGGED TABLE position_staging (
  seq         int              NOT NULL, -- the position's index in the worker's batch, to name rejects
  driver_id   uuid             NOT NULL,
  recorded_at timestamptz      NOT NULL,
  lat         double precision NOT NULL,
  lon         double precision NOT NULL,
  h3          bigint           NOT NULL,
  speed_kmh   real,
  heading_deg real,
  accuracy_m  real,
  battery_pct smallint,
  received_at timestamptz
);
--> statement-breakpoint

CREATE FUNCTION open_position_staging() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('pg_temp.position_staging') IS NULL THEN
    CREATE TEMP TABLE position_staging (LIKE public.position_staging) ON COMMIT DELETE ROWS;
  END IF;
END $$;
