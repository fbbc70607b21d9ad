-- The hot path: one call applies everything staged in this session's position_staging, in one set-based statement.
--
--   * a position of an unknown driver is rejected (unknown_driver);
--   * a position not newer than the driver's current one is rejected: `duplicate` when the trail already has it (a
--     redelivery, harmless), `out_of_order` when it never got in (a late position); repeats inside the batch are
--     duplicates too;
--   * every accepted position is appended to the trail (ON CONFLICT DO NOTHING on (driver, time));
--   * each driver moves to its latest accepted position: an offline driver comes online (or back to its order's
--     leg), `assigned` becomes `at_restaurant` inside the restaurant geofence, `delivering` becomes `arriving` inside
--     the delivery geofence; the moves come from driver_transitions and are written to state_history;
--   * a moved driver with a live order gets a new ETA for it (driver_state.eta_seconds): remaining distance × detour
--     factor ÷ the driver's smoothed speed (never below the floor speed);
--   * a NOTIFY on `order_tracking` per live order whose driver moved feeds the live tracking stream.
-- Applying the same batch twice changes nothing the second time: every position is then a duplicate.
-- The staging table is emptied at the end, so several batches may be applied in one transaction.

CREATE FUNCTION apply_position_batch()
RETURNS TABLE (staged int, applied int, duplicate int, out_of_order int, unknown_driver int, transitions int,
               orders_notified int, rejected_seq int[], rejected_reason text[])
LANGUAGE plpgsql AS $$
DECLARE
  v_set tracking_settings;
  v_from timestamptz;
  v_to timestamptz;
BEGIN
  IF to_regclass('pg_temp.position_staging') IS NULL THEN
    RAISE EXCEPTION 'this session has no staging table: call open_position_staging(), COPY into position_staging, then apply'
      USING ERRCODE = 'T1500';
  END IF;
  -- Fresh statistics for this batch's size; also makes the cached plans below re-plan for it.
  ANALYZE pg_temp.position_staging;
  SELECT * INTO v_set FROM tracking_settings WHERE id = 1;
  SELECT min(s.recorded_at), max(s.recorded_at) INTO v_from, v_to FROM pg_temp.position_staging s;
  PERFORM ensure_trail_partitions(v_from, v_to);

  RETURN QUERY
  WITH ranked AS (
    -- One sort serves both questions: is this row a repeat inside the batch, and is it the driver's newest.
    SELECT s.*,
           row_number() OVER (PARTITION BY s.driver_id, s.recorded_at ORDER BY s.seq) AS copy_no,
           s.recorded_at = max(s.recorded_at) OVER (PARTITION BY s.driver_id) AS newest
    FROM pg_temp.position_staging s
  ), batch AS (
    SELECT * FROM ranked WHERE copy_no = 1
  ), judged_positions AS (
    -- driver_state is read once, here; everything below carries what it needs of the driver's row along.
    SELECT b.*, ds.driver_id IS NOT NULL AS known,
           ds.driver_id IS NOT NULL AND (ds.position_at IS NULL OR b.recorded_at > ds.position_at) AS fresh,
           ds.status AS seen_status, ds.current_order_id AS order_id, ds.position AS previous_geo,
           ds.position_at AS previous_at, ds.recent_speed_mps AS old_speed
    FROM batch b LEFT JOIN driver_state ds ON ds.driver_id = b.driver_id
  ), accepted AS (
    SELECT * FROM judged_positions WHERE fresh
  ), rejected AS (
    SELECT r.seq, 'duplicate' AS reason FROM ranked r WHERE r.copy_no > 1
    UNION ALL
    SELECT j.seq,
           CASE WHEN NOT j.known THEN 'unknown_driver'
                WHEN EXISTS (SELECT 1 FROM position_trail t
                              WHERE t.driver_id = j.driver_id AND t.recorded_at = j.recorded_at) THEN 'duplicate'
                ELSE 'out_of_order' END
    FROM judged_positions j WHERE NOT j.fresh
  ), trail AS (
    INSERT INTO position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
    SELECT a.driver_id, a.recorded_at, a.lat, a.lon, a.h3, a.speed_kmh, a.heading_deg, a.accuracy_m, a.received_at
    FROM accepted a
    ORDER BY a.driver_id, a.recorded_at -- key order: the unique index is written page by page, not at random
    ON CONFLICT DO NOTHING
    RETURNING 1
  ), latest AS (
    SELECT a.*, ST_SetSRID(ST_MakePoint(a.lon, a.lat), 4326)::geography AS geo
    FROM accepted a
    WHERE a.newest
  ), planned AS (
    -- What each moved driver becomes, judged on the state read above; the UPDATE re-checks that state.
    SELECT l.*, o.status AS order_status, r.location AS restaurant_geo, o.delivery_location AS delivery_geo,
           CASE
             WHEN l.seen_status = 'offline' THEN
               CASE o.status WHEN 'assigned' THEN 'resume_assigned' WHEN 'picked_up' THEN 'resume_delivering'
                             ELSE 'online' END
             WHEN l.seen_status = 'assigned'
                  AND ST_DWithin(l.geo, r.location, v_set.restaurant_geofence_m, false) THEN 'enter_restaurant'
             WHEN l.seen_status = 'delivering'
                  AND ST_DWithin(l.geo, o.delivery_location, v_set.delivery_geofence_m, false) THEN 'enter_delivery'
           END AS event,
           CASE WHEN l.speed_kmh IS NOT NULL THEN l.speed_kmh / 3.6
                WHEN l.previous_geo IS NOT NULL THEN
                  ST_Distance(l.previous_geo, l.geo, false) / greatest(extract(epoch FROM l.recorded_at - l.previous_at), 1)
           END AS speed_sample
    FROM latest l
    LEFT JOIN orders o ON o.id = l.order_id
    LEFT JOIN restaurants r ON r.id = o.restaurant_id
  ), judged AS (
    SELECT p.*, t.to_status, coalesce(t.to_status, p.seen_status) AS next_status,
           coalesce(v_set.speed_smoothing * p.speed_sample
                    + (1 - v_set.speed_smoothing) * coalesce(p.old_speed, p.speed_sample), p.old_speed) AS new_speed
    FROM planned p
    LEFT JOIN driver_transitions t ON t.from_status = p.seen_status AND t.event = p.event
  ), estimated AS (
    -- The remaining leg: to the restaurant and on to the customer before pickup, straight to the customer after.
    SELECT j.*,
           CASE WHEN j.order_status IN ('assigned', 'picked_up') AND j.next_status <> 'offline' THEN
             ceil(v_set.route_detour_factor
                  * CASE WHEN j.order_status = 'assigned'
                         THEN ST_Distance(j.geo, j.restaurant_geo, false)
                              + ST_Distance(j.restaurant_geo, j.delivery_geo, false)
                         ELSE ST_Distance(j.geo, j.delivery_geo, false) END
                  / greatest(coalesce(j.new_speed, 0), v_set.eta_floor_speed_mps))::int
           END AS eta_seconds
    FROM judged j
  ), moved AS (
    UPDATE driver_state ds SET
      position = e.geo, lat = e.lat, lon = e.lon, h3 = e.h3,
      speed_kmh = e.speed_kmh, heading_deg = e.heading_deg, accuracy_m = e.accuracy_m,
      battery_pct = coalesce(e.battery_pct, ds.battery_pct),
      position_at = e.recorded_at, received_at = e.received_at, recent_speed_mps = e.new_speed,
      eta_seconds = e.eta_seconds,
      status = CASE WHEN e.to_status IS NOT NULL AND ds.status = e.seen_status THEN e.to_status ELSE ds.status END,
      status_since = CASE WHEN e.to_status IS NOT NULL AND ds.status = e.seen_status THEN now()
                          ELSE ds.status_since END,
      updated_at = now()
    FROM estimated e
    WHERE ds.driver_id = e.driver_id
      AND (ds.position_at IS NULL OR ds.position_at < e.recorded_at)
    RETURNING ds.driver_id, ds.status, e.order_id, e.order_status, e.seen_status, e.event,
              e.to_status IS NOT NULL AND ds.status = e.to_status AS changed,
              e.lat, e.lon, e.recorded_at, e.eta_seconds
  ), history AS (
    INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
    SELECT 'driver', m.driver_id, m.seen_status, m.status, m.event FROM moved m WHERE m.changed
    RETURNING 1
  ), notified AS (
    SELECT pg_notify('order_tracking', json_build_object(
             'order_id', m.order_id, 'status', m.order_status, 'driver_id', m.driver_id, 'driver_state', m.status,
             'lat', m.lat, 'lon', m.lon, 'at', m.recorded_at, 'eta_seconds', m.eta_seconds)::text)
    FROM moved m
    WHERE m.order_status IN ('assigned', 'picked_up')
  )
  SELECT (SELECT count(*) FROM pg_temp.position_staging)::int,
         (SELECT count(*) FROM trail)::int,
         (SELECT count(*) FROM rejected x WHERE x.reason = 'duplicate')::int,
         (SELECT count(*) FROM rejected x WHERE x.reason = 'out_of_order')::int,
         (SELECT count(*) FROM rejected x WHERE x.reason = 'unknown_driver')::int,
         (SELECT count(*) FROM history)::int,
         (SELECT count(*) FROM notified)::int,
         (SELECT coalesce(array_agg(x.seq ORDER BY x.seq), '{}') FROM rejected x WHERE x.reason <> 'duplicate'),
         (SELECT coalesce(array_agg(x.reason ORDER BY x.seq), '{}') FROM rejected x WHERE x.reason <> 'duplicate');
  -- The batch is consumed; a second batch in the same transaction starts from an empty table.
  TRUNCATE pg_temp.position_staging;
END $$;
