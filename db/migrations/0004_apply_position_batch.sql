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
--   * each live order of a moved driver gets a new ETA: remaining distance × detour factor ÷ the driver's smoothed
--     speed (never below the floor speed); orders locked by an API call right now are skipped until the next batch;
--   * a NOTIFY on `order_tracking` per updated order feeds the live tracking stream.
-- Applying the same batch twice changes nothing the second time: every position is then a duplicate.
-- The staging table is emptied at the end, so several batches may be applied in one transaction.

CREATE FUNCTION apply_position_batch()
RETURNS TABLE (staged int, applied int, duplicate int, out_of_order int, unknown_driver int, transitions int,
               orders_updated int, rejected_seq int[], rejected_reason text[])
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
  WITH batch AS (
    SELECT DISTINCT ON (s.driver_id, s.recorded_at) s.*
    FROM pg_temp.position_staging s
    ORDER BY s.driver_id, s.recorded_at, s.seq
  ), judged_positions AS (
    SELECT b.*, ds.driver_id IS NOT NULL AS known,
           ds.driver_id IS NOT NULL AND (ds.position_at IS NULL OR b.recorded_at > ds.position_at) AS fresh
    FROM batch b LEFT JOIN driver_state ds ON ds.driver_id = b.driver_id
  ), accepted AS (
    SELECT * FROM judged_positions WHERE fresh
  ), rejected AS (
    SELECT s.seq, 'duplicate' AS reason
    FROM pg_temp.position_staging s
    WHERE NOT EXISTS (SELECT 1 FROM batch b WHERE b.seq = s.seq)
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
    ON CONFLICT DO NOTHING
    RETURNING 1
  ), latest AS (
    SELECT DISTINCT ON (a.driver_id) a.*, ST_SetSRID(ST_MakePoint(a.lon, a.lat), 4326)::geography AS geo
    FROM accepted a
    ORDER BY a.driver_id, a.recorded_at DESC
  ), planned AS (
    -- What each moved driver becomes, judged on the state this statement sees; the UPDATE re-checks that state.
    SELECT l.*, ds.status AS seen_status, ds.current_order_id AS order_id,
           r.location AS restaurant_geo, o.delivery_location AS delivery_geo,
           CASE
             WHEN ds.status = 'offline' THEN
               CASE o.status WHEN 'assigned' THEN 'resume_assigned' WHEN 'picked_up' THEN 'resume_delivering'
                             ELSE 'online' END
             WHEN ds.status = 'assigned'
                  AND ST_DWithin(l.geo, r.location, v_set.restaurant_geofence_m, false) THEN 'enter_restaurant'
             WHEN ds.status = 'delivering'
                  AND ST_DWithin(l.geo, o.delivery_location, v_set.delivery_geofence_m, false) THEN 'enter_delivery'
           END AS event,
           CASE WHEN l.speed_kmh IS NOT NULL THEN l.speed_kmh / 3.6
                WHEN ds.position IS NOT NULL THEN
                  ST_Distance(ds.position, l.geo, false) / greatest(extract(epoch FROM l.recorded_at - ds.position_at), 1)
           END AS speed_sample,
           ds.recent_speed_mps AS old_speed
    FROM latest l
    JOIN driver_state ds ON ds.driver_id = l.driver_id
    LEFT JOIN orders o ON o.id = ds.current_order_id
    LEFT JOIN restaurants r ON r.id = o.restaurant_id
  ), judged AS (
    SELECT p.*, t.to_status,
           coalesce(v_set.speed_smoothing * p.speed_sample
                    + (1 - v_set.speed_smoothing) * coalesce(p.old_speed, p.speed_sample), p.old_speed) AS new_speed
    FROM planned p
    LEFT JOIN driver_transitions t ON t.from_status = p.seen_status AND t.event = p.event
  ), moved AS (
    UPDATE driver_state ds SET
      position = j.geo, lat = j.lat, lon = j.lon, h3 = j.h3,
      speed_kmh = j.speed_kmh, heading_deg = j.heading_deg, accuracy_m = j.accuracy_m,
      battery_pct = coalesce(j.battery_pct, ds.battery_pct),
      position_at = j.recorded_at, received_at = j.received_at, recent_speed_mps = j.new_speed,
      status = CASE WHEN j.to_status IS NOT NULL AND ds.status = j.seen_status THEN j.to_status ELSE ds.status END,
      status_since = CASE WHEN j.to_status IS NOT NULL AND ds.status = j.seen_status THEN now()
                          ELSE ds.status_since END,
      updated_at = now()
    FROM judged j
    WHERE ds.driver_id = j.driver_id
      AND (ds.position_at IS NULL OR ds.position_at < j.recorded_at)
    RETURNING ds.driver_id, ds.status, ds.current_order_id AS order_id, j.seen_status, j.event,
              j.to_status IS NOT NULL AND ds.status = j.to_status AS changed,
              j.geo, j.lat, j.lon, j.recorded_at, j.new_speed, j.restaurant_geo, j.delivery_geo
  ), history AS (
    INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
    SELECT 'driver', m.driver_id, m.seen_status, m.status, m.event FROM moved m WHERE m.changed
    RETURNING 1
  ), eta AS (
    SELECT m.*,
           ceil(v_set.route_detour_factor
                * CASE WHEN m.status IN ('assigned', 'at_restaurant')
                       THEN ST_Distance(m.geo, m.restaurant_geo, false) + ST_Distance(m.restaurant_geo, m.delivery_geo, false)
                       ELSE ST_Distance(m.geo, m.delivery_geo, false) END
                / greatest(coalesce(m.new_speed, 0), v_set.eta_floor_speed_mps))::int AS eta_seconds
    FROM moved m
    WHERE m.order_id IS NOT NULL AND m.status <> 'offline'
  ), lockable AS (
    SELECT o.id FROM orders o
    WHERE o.id IN (SELECT e.order_id FROM eta e) AND o.status IN ('assigned', 'picked_up')
    FOR UPDATE OF o SKIP LOCKED
  ), eta_written AS (
    UPDATE orders o SET eta_seconds = e.eta_seconds, eta_updated_at = now()
    FROM eta e JOIN lockable k ON k.id = e.order_id
    WHERE o.id = e.order_id
    RETURNING o.id, o.status AS order_status, e.driver_id, e.status AS driver_status, e.lat, e.lon, e.recorded_at,
              e.eta_seconds
  ), notified AS (
    SELECT pg_notify('order_tracking', json_build_object(
             'order_id', w.id, 'status', w.order_status, 'driver_id', w.driver_id, 'driver_state', w.driver_status,
             'lat', w.lat, 'lon', w.lon, 'at', w.recorded_at, 'eta_seconds', w.eta_seconds)::text)
    FROM eta_written w
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
