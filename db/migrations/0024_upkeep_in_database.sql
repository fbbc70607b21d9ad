-- The scheduled upkeep runs inside PostgreSQL, once per database, instead of in every worker (issue #12; the
-- developers' guide: "so N workers do not each run it"). Until now each position worker ran, on its own timers, the
-- offline sweep (every 5 s), the trail partitions (hourly) and the trail compaction (every 5 minutes, paced in
-- TypeScript, workers/upkeep.ts): N workers swept N times and, with the compaction, walked the drivers N times at
-- up to N times the paced rate.
--
-- Now pg_cron (loaded by the server, its extension in the `postgres` database: db/roles.sql) runs the jobs listed by
-- upkeep_jobs() below, as the role tracking_upkeep, in each database registered with it (db/upkeep-jobs.ts, run by
-- bin/stack after the migrations). pg_cron 1.4 schedules by the minute, so:
--   * the sweep is a procedure that sweeps every 5 s for 55 s, committing between sweeps;
--   * the compaction is a procedure that works for up to 50 s a minute, one transaction per step, and keeps its pass
--     in a table, so a pass spans ticks (and a restart) and is never run twice at once.
-- What was decided in TypeScript is decided here: a pass that finds fixes is spread over trail_compaction_spread_s
-- (the share of the pass done is the share of the driver id space walked, ids being random UUIDs); a pass behind
-- that schedule does not wait; and while the workers' Kafka lag (which each worker reports, ingest_lag) is over
-- trail_compaction_yield_lag, the compaction waits for ingest. Sleeps are 1 s at most with a commit around each,
-- so no snapshot is held long (a held snapshot would keep vacuum from driver_state's dead rows). The procedures carry
-- no SET search_path (a procedure with one may not commit); pg_cron's sessions have the default path.

ALTER TABLE tracking_settings
  ADD COLUMN trail_compaction_drivers_per_step integer NOT NULL DEFAULT 200
    CHECK (trail_compaction_drivers_per_step BETWEEN 1 AND 100000),
  ADD COLUMN trail_compaction_spread_s integer NOT NULL DEFAULT 2400 CHECK (trail_compaction_spread_s BETWEEN 0 AND 3000),
  ADD COLUMN trail_compaction_yield_lag bigint NOT NULL DEFAULT 10000 CHECK (trail_compaction_yield_lag >= 0),
  ADD COLUMN trail_compaction_every_s integer NOT NULL DEFAULT 300 CHECK (trail_compaction_every_s BETWEEN 0 AND 86400);
--> statement-breakpoint
-- The worker writes its configured values at start, as it does offline_after_s (lib/config.ts is the one place);
-- the cadence of passes is the database's own.
GRANT UPDATE (trail_compaction_drivers_per_step, trail_compaction_spread_s, trail_compaction_yield_lag)
  ON tracking_settings TO tracking_worker;
--> statement-breakpoint

-- Each worker's consumer lag in messages, reported every 2 s; a report older than 10 s is a worker gone.
CREATE TABLE ingest_lag (
  worker text PRIMARY KEY,
  lag bigint NOT NULL CHECK (lag >= 0),
  reported_at timestamptz NOT NULL DEFAULT now()
);
--> statement-breakpoint
CREATE FUNCTION report_ingest_lag(p_worker text, p_lag bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  INSERT INTO ingest_lag (worker, lag, reported_at) VALUES (p_worker, greatest(p_lag, 0), clock_timestamp())
  ON CONFLICT (worker) DO UPDATE SET lag = excluded.lag, reported_at = excluded.reported_at;
  DELETE FROM ingest_lag WHERE reported_at < clock_timestamp() - interval '1 hour';
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION report_ingest_lag(text, bigint) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION report_ingest_lag(text, bigint) TO tracking_worker;
--> statement-breakpoint
-- The lag of the workers heard from in the last 10 s, summed (0 when none is).
CREATE FUNCTION ingest_lag_now() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT coalesce(sum(lag), 0)::bigint FROM ingest_lag WHERE reported_at > clock_timestamp() - interval '10 seconds'
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION ingest_lag_now() FROM PUBLIC;
--> statement-breakpoint

-- The compaction pass under way (started_at NULL: none), as the procedure left it after its last step.
CREATE TABLE trail_compaction_pass (
  id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  started_at timestamptz,
  after_driver uuid,            -- the last driver done in this pass
  last_step_moved integer NOT NULL DEFAULT 0,
  moved bigint NOT NULL DEFAULT 0, -- fixes moved by this pass, or by the last one when none is under way
  last_started_at timestamptz,
  finished_at timestamptz
);
--> statement-breakpoint
INSERT INTO trail_compaction_pass (id) VALUES (1);
--> statement-breakpoint

-- The share of the driver id space up to p_driver, in [0, 1): the share of a pass done (drivers are walked in id
-- order, their ids are random v4 UUIDs).
CREATE FUNCTION trail_compaction_share(p_driver uuid) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT ('x' || left(p_driver::text, 8))::bit(32)::bigint / 4294967296.0::double precision
$$;
--> statement-breakpoint
-- How long a pass started at p_started, p_share done at p_now, waits to keep to a spread of p_spread_s seconds:
-- until p_share of the spread has passed. Behind schedule (a backlog): no wait. A share past 1 counts as 1.
CREATE FUNCTION trail_compaction_wait(p_started timestamptz, p_now timestamptz, p_share double precision,
                                      p_spread_s integer) RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT greatest(interval '0',
                  p_started + make_interval(secs => least(greatest(p_share, 0), 1) * p_spread_s) - p_now)
$$;
--> statement-breakpoint

-- One tick of the trail compaction: steps (compact_trail_step, 0014; one transaction each) for up to p_budget, then
-- returns; the pass goes on at the next tick. A new pass starts at most every trail_compaction_every_s.
-- Ticks running at once (two registrations, a test beside the scheduler) take turns on the pass row and continue
-- one pass rather than repeating it.
CREATE PROCEDURE trail_compaction_tick(p_budget interval DEFAULT '50 seconds')
LANGUAGE plpgsql AS $$
DECLARE
  v_until timestamptz := clock_timestamp() + p_budget;
  v_pass trail_compaction_pass%ROWTYPE;
  v_per_step integer;
  v_spread_s integer;
  v_yield_lag bigint;
  v_every_s integer;
  v_wait interval;
  v_last uuid;
  v_moved integer;
BEGIN
  LOOP
    EXIT WHEN clock_timestamp() >= v_until;
    SELECT trail_compaction_drivers_per_step, trail_compaction_spread_s, trail_compaction_yield_lag,
           trail_compaction_every_s
      INTO v_per_step, v_spread_s, v_yield_lag, v_every_s
      FROM tracking_settings WHERE id = 1;
    SELECT * INTO v_pass FROM trail_compaction_pass WHERE id = 1 FOR UPDATE;
    IF v_pass.started_at IS NULL THEN
      EXIT WHEN v_pass.last_started_at > clock_timestamp() - make_interval(secs => v_every_s);
      UPDATE trail_compaction_pass
        SET started_at = clock_timestamp(), last_started_at = clock_timestamp(), after_driver = NULL,
            last_step_moved = 0, moved = 0
        WHERE id = 1;
      COMMIT;
      CONTINUE;
    END IF;
    -- Fresh positions first: while ingest is behind, look again every second.
    IF v_yield_lag > 0 AND ingest_lag_now() > v_yield_lag THEN
      COMMIT;
      PERFORM pg_sleep(least(1, greatest(extract(epoch FROM v_until - clock_timestamp()), 0)));
      COMMIT;
      CONTINUE;
    END IF;
    -- On schedule: after a step that moved fixes, wait until the share done is due.
    IF v_pass.last_step_moved > 0 AND v_pass.after_driver IS NOT NULL THEN
      v_wait := trail_compaction_wait(v_pass.started_at, clock_timestamp(), trail_compaction_share(v_pass.after_driver),
                                      v_spread_s);
      IF v_wait > interval '0' THEN
        COMMIT;
        PERFORM pg_sleep(least(1, extract(epoch FROM v_wait), greatest(extract(epoch FROM v_until - clock_timestamp()), 0)));
        COMMIT;
        CONTINUE;
      END IF;
    END IF;
    SELECT s.last_driver, s.positions INTO v_last, v_moved FROM compact_trail_step(v_pass.after_driver, v_per_step) s;
    IF v_last IS NULL THEN
      UPDATE trail_compaction_pass
        SET started_at = NULL, after_driver = NULL, last_step_moved = 0, moved = moved + v_moved,
            finished_at = clock_timestamp()
        WHERE id = 1;
      COMMIT;
      EXIT;
    END IF;
    UPDATE trail_compaction_pass
      SET after_driver = v_last, last_step_moved = v_moved, moved = moved + v_moved
      WHERE id = 1;
    COMMIT;
  END LOOP;
END $$;
--> statement-breakpoint

-- The offline sweep (sweep_offline_drivers, 0003) every p_every for p_for, one transaction per sweep.
CREATE PROCEDURE sweep_offline_drivers_for(p_for interval DEFAULT '55 seconds', p_every interval DEFAULT '5 seconds')
LANGUAGE plpgsql AS $$
DECLARE
  v_until timestamptz := clock_timestamp() + p_for;
  v_next timestamptz;
BEGIN
  LOOP
    v_next := clock_timestamp() + p_every;
    PERFORM sweep_offline_drivers();
    COMMIT;
    EXIT WHEN v_next >= v_until;
    WHILE clock_timestamp() < v_next LOOP
      PERFORM pg_sleep(least(1, extract(epoch FROM v_next - clock_timestamp())));
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
--> statement-breakpoint

-- What pg_cron runs in this database, as tracking_upkeep (registered by db/upkeep-jobs.ts). Every minute for the
-- sweep and the compaction (each runs most of the minute; pg_cron never starts a job while its last run is going),
-- the partitions hourly.
CREATE FUNCTION upkeep_jobs() RETURNS TABLE (name text, schedule text, command text)
LANGUAGE sql IMMUTABLE AS $$
  VALUES ('sweep_offline_drivers', '* * * * *', 'CALL sweep_offline_drivers_for()'),
         ('trail_compaction', '* * * * *', 'CALL trail_compaction_tick()'),
         ('trail_partitions', '7 * * * *', 'SELECT trail_upkeep()')
$$;
--> statement-breakpoint

-- Who may run what: the upkeep role (db/roles.sql makes it) connects, on pg_cron's connections, and runs the
-- three jobs and nothing else; the worker no longer runs them.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracking_upkeep') THEN
    RAISE EXCEPTION 'role tracking_upkeep does not exist'
      USING HINT = 'bin/stack up creates the service roles (db/roles.sql) before migrating';
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO tracking_upkeep', current_database());
END $$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO tracking_upkeep;
--> statement-breakpoint
GRANT EXECUTE ON PROCEDURE trail_compaction_tick(interval) TO tracking_upkeep;
--> statement-breakpoint
GRANT EXECUTE ON PROCEDURE sweep_offline_drivers_for(interval, interval) TO tracking_upkeep;
--> statement-breakpoint
REVOKE ALL ON PROCEDURE trail_compaction_tick(interval) FROM PUBLIC;
--> statement-breakpoint
REVOKE ALL ON PROCEDURE sweep_offline_drivers_for(interval, interval) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION sweep_offline_drivers(interval), trail_upkeep(), compact_trail_step(uuid, int, timestamptz),
  ingest_lag_now(), trail_compaction_share(uuid), trail_compaction_wait(timestamptz, timestamptz, double precision, integer),
  notify_order_tracking(text[])
  TO tracking_upkeep;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION sweep_offline_drivers(interval), trail_upkeep(), compact_trail_step(uuid, int, timestamptz)
  FROM tracking_worker;
--> statement-breakpoint
GRANT SELECT ON tracking_settings, driver_transitions, orders TO tracking_upkeep;
--> statement-breakpoint
GRANT SELECT, UPDATE ON driver_state, trail_compaction_pass TO tracking_upkeep;
--> statement-breakpoint
GRANT INSERT ON state_history TO tracking_upkeep;
