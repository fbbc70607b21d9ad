-- A driver swept offline changes what its order's customer sees (the driver's state): say so on `order_tracking`,
-- as the apply procedure and order_transition do, so live streams and the API's track cache learn of it too.
CREATE OR REPLACE FUNCTION sweep_offline_drivers(p_after interval DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  v_after interval := coalesce(p_after, make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1)));
  v_count int;
  v_notified int; -- counted so the notifying query runs; the caller wants the drivers
BEGIN
  WITH stale AS (
    SELECT ds.driver_id, ds.status AS from_status, t.to_status
    FROM driver_state ds
    JOIN driver_transitions t ON t.from_status = ds.status AND t.event = 'timeout'
    WHERE coalesce(ds.received_at, ds.status_since) < now() - v_after
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
    SELECT pg_notify('order_tracking', json_build_object(
             'order_id', o.id, 'status', o.status, 'driver_id', m.driver_id, 'driver_state', m.status)::text)
    FROM moved m JOIN orders o ON o.id = m.current_order_id
    WHERE o.status IN ('assigned', 'picked_up')
  )
  SELECT (SELECT count(*) FROM logged), (SELECT count(*) FROM notified) INTO v_count, v_notified;
  RETURN v_count;
END $$;
