-- The compaction's yield to ingest pauses the pass's schedule (issue #12; docs/trail.md "Paced"). Until now a pass
-- that waited while the workers' Kafka lag was over trail_compaction_yield_lag fell behind its schedule, and a pass
-- behind schedule does not wait: as soon as the lag dropped under the threshold it ran unpaced until it had caught
-- up, taking PostgreSQL's second core, so the lag rose over the threshold again. In the sustained runs of
-- 2026-12-01 (e2e-2026-12-01T18-15-50-559Z, a full closed hour to compact on a slow spell of the box) the lag swung
-- between ~5,000 and ~42,000 messages and send→db p99 was 5-10 s. Now the time a tick waits for ingest moves the
-- pass's start on by as much: after the wait the pass goes on at its scheduled rate, and finishes later by the time
-- it yielded. A pass behind schedule for another reason (a backlog bigger than the schedule's steps can move: the
-- box too slow for it) still does not wait.
--
-- trail_compaction_tick is redefined whole (0025's body and this change; a sealed migration never changes).

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
  v_yielded_from timestamptz;
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
    -- Fresh positions first: while ingest is behind, look again every second. The wait pauses the pass's schedule
    -- (its start moves on by the time waited), so the pass does not come back from it behind schedule and run
    -- unpaced until it has caught up.
    IF v_yield_lag > 0 AND ingest_lag_now() > v_yield_lag THEN
      COMMIT;
      v_yielded_from := clock_timestamp();
      PERFORM pg_sleep(least(1, greatest(extract(epoch FROM v_until - clock_timestamp()), 0)));
      UPDATE trail_compaction_pass
        SET started_at = started_at + (clock_timestamp() - v_yielded_from)
        WHERE id = 1 AND started_at IS NOT NULL;
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
