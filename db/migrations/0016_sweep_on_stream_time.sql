-- The offline sweep judges silence on the stream's time, not the wall clock (issue 10, found by bench:catch-up).
--
-- Before: a driver went offline when its last position reached us more than OFFLINE_AFTER before now(). After an
-- outage longer than that (the database away for 10 minutes while Kafka kept the positions), the first sweep after
-- the restore moved the WHOLE fleet offline, and while the worker drained the backlog every batch brought its drivers
-- back (offline --online--> available, a history row and a mode notice each) and the next sweep 5 s later took them
-- away again: measured, the drain applied ~10,000 positions/s against 25,000/s offered, so it never caught up, and
-- the mode publisher would have told every phone to stop reporting.
--
-- Now the reference is the newest position received from anyone (max(received_at) over driver_state, which the
-- sweep's scan reads anyway), never later than now(): a driver is silent when nothing of theirs reached us within
-- OFFLINE_AFTER of what the pipeline has applied so far. While the pipeline is current that is now(), as before;
-- while it drains a backlog, drivers who were reporting all along stay online. If the whole fleet falls silent the
-- reference stops too, so it never lags now() by more than an hour: after that, the wall clock rules again.
CREATE OR REPLACE FUNCTION sweep_offline_drivers(p_after interval DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  v_after interval := coalesce(p_after, make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1)));
  v_heard_through timestamptz;
  v_count int;
  v_notified int; -- read so the notifying query runs; the caller wants the drivers
BEGIN
  SELECT greatest(least(now(), max(received_at)), now() - interval '1 hour') INTO v_heard_through FROM driver_state;
  WITH stale AS (
    SELECT ds.driver_id, ds.status AS from_status, t.to_status
    FROM driver_state ds
    JOIN driver_transitions t ON t.from_status = ds.status AND t.event = 'timeout'
    WHERE coalesce(ds.received_at, ds.status_since) < v_heard_through - v_after
    FOR UPDATE OF ds SKIP LOCKED
  ), moved AS (
    UPDATE driver_state ds SET status = s.to_status, status_since = now(), updated_at = now()
    FROM stale s WHERE ds.driver_id = s.driver_id
    RETURNING ds.driver_id, ds.current_order_id, s.from_status, ds.status
  ), logged AS (
    INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
    SELECT 'driver', driver_id, from_status, status, 'timeout' FROM moved
    RETURNING 1
  ), notified AS (
    SELECT notify_order_tracking(array_agg(json_build_object(
             'order_id', o.id, 'status', o.status, 'driver_id', m.driver_id, 'driver_state', m.status)::text)) AS sent
    FROM moved m JOIN orders o ON o.id = m.current_order_id
    WHERE o.status IN ('assigned', 'picked_up')
  )
  SELECT (SELECT count(*) FROM logged), (SELECT n.sent FROM notified n) INTO v_count, v_notified;
  RETURN v_count;
END $$;
