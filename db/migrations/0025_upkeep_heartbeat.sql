-- Each scheduled job stamps when it last finished its work (issue #12; docs/upkeep.md "Watching it"). Since 0024 the
-- jobs run inside PostgreSQL (pg_cron), and a failing run shows only in pg_cron's run history (the `postgres`
-- database) and the server log; the worker's upkeep_failures_total no longer counted them. Now each job stamps
-- upkeep_heartbeat: the sweep after each sweep, the compaction at the end of each tick, the partitions after each
-- run. The worker exports the age of each stamp (upkeep_job_age_seconds{job}), so a job that fails, or no longer
-- runs (the scheduler down, the database not registered), shows as an age that keeps growing.

CREATE TABLE upkeep_heartbeat (
  job text PRIMARY KEY,
  ok_at timestamptz NOT NULL
);
--> statement-breakpoint
CREATE FUNCTION stamp_upkeep(p_job text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  INSERT INTO upkeep_heartbeat (job, ok_at) VALUES (p_job, clock_timestamp())
  ON CONFLICT (job) DO UPDATE SET ok_at = excluded.ok_at
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION stamp_upkeep(text) TO tracking_upkeep;
--> statement-breakpoint
-- Each job's stamp's age in seconds, for the worker's gauge; a job never stamped is not listed.
CREATE FUNCTION upkeep_heartbeats() RETURNS TABLE (job text, age_s double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT job, extract(epoch FROM clock_timestamp() - ok_at)::double precision FROM upkeep_heartbeat ORDER BY job
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION upkeep_heartbeats() TO tracking_worker;
--> statement-breakpoint
-- The partitions job: trail_upkeep() (0010), then its stamp.
CREATE FUNCTION trail_partitions_job() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_changed integer;
BEGIN
  v_changed := trail_upkeep();
  PERFORM stamp_upkeep('trail_partitions');
  RETURN v_changed;
END $$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION trail_partitions_job() TO tracking_upkeep;
--> statement-breakpoint
CREATE OR REPLACE PROCEDURE sweep_offline_drivers_for(p_for interval DEFAULT '55 seconds', p_every interval DEFAULT '5 seconds')
LANGUAGE plpgsql AS $$
DECLARE
  v_until timestamptz := clock_timestamp() + p_for;
  v_next timestamptz;
BEGIN
  LOOP
    v_next := clock_timestamp() + p_every;
    PERFORM sweep_offline_drivers();
    PERFORM stamp_upkeep('sweep_offline_drivers');
    COMMIT;
    EXIT WHEN v_next >= v_until;
    WHILE clock_timestamp() < v_next LOOP
      PERFORM pg_sleep(least(1, extract(epoch FROM v_next - clock_timestamp())));
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
--> statement-breakpoint
CREATE OR REPLACE PROCEDURE trail_compaction_tick(p_budget interval DEFAULT '50 seconds')
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
  PERFORM stamp_upkeep('trail_compaction');
END $$;
--> statement-breakpoint
-- 0024's list with the partitions job stamping (registered again by db/upkeep-jobs.ts at `bin/stack up`).
CREATE OR REPLACE FUNCTION upkeep_jobs() RETURNS TABLE (name text, schedule text, command text)
LANGUAGE sql IMMUTABLE AS $$
  VALUES ('sweep_offline_drivers', '* * * * *', 'CALL sweep_offline_drivers_for()'),
         ('trail_compaction', '* * * * *', 'CALL trail_compaction_tick()'),
         ('trail_partitions', '7 * * * *', 'SELECT trail_partitions_job()')
$$;
