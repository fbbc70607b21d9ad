-- apply_position_batch, faster, with the same contract and results as 0004 (which describes the rules).
--
-- What changed, and why (bench:db, 50,000 positions per batch on this 2-core machine):
--   * The trail is written with a plain INSERT instead of INSERT … ON CONFLICT DO NOTHING, whose speculative
--     insertion cost twice as much per row (243 ms against 117 ms for 50,000 rows). It is safe because a driver's
--     rows reach the trail only together with the UPDATE that moves the driver, under its row lock, and only if the
--     driver's position is still the one they were judged against (an optimistic check): every row is then newer
--     than anything of the driver's in the trail. If another transaction moved one of the batch's drivers meanwhile
--     (two workers briefly owning one partition during a rebalance), the function raises 40001 and the worker
--     applies the batch again. If the trail holds a row beyond its driver's position anyway (written by 0004 in
--     such a race, or by hand), the unique key refuses it and the batch is applied again with ON CONFLICT DO
--     NOTHING: slower, never wrong.
--   * No ANALYZE of the staging table per batch (45 ms at 50,000 rows): the statement is planned per call
--     (EXECUTE), when the planner sees the staging table's real size.
--   * driver_state is read, and updated, through its primary key for exactly the batch's drivers (= ANY(array)),
--     never by scanning and hashing the whole table: a batch at 25,000/s (~7,500 positions) moves ~2,000 of
--     100,000 drivers. In bench:db, with every driver's row already holding a position, this beat scan+hash both
--     on one connection and on two (4 runs each way; the machine is noisy).
--   * One sort and one window (lag) find both the repeats and each driver's newest row, where 0004 used two
--     partitioned windows; the driver's geography is built once.
--   * A refused position is looked up in the trail by its key, never by hashing the whole trail (0004's EXISTS
--     could be planned that way: 60 ms at 320,000 trail rows, and growing with the trail).
-- Measured in the function alone, 50,000 positions: 4 per driver per batch (phones batching) 590 → 365 ms; one per
-- driver 870 → 890 ms. The worker's binary COPY (workers/copy-binary.ts) took as much again off each batch.

CREATE OR REPLACE FUNCTION apply_position_batch()
RETURNS TABLE (staged int, applied int, duplicate int, out_of_order int, unknown_driver int, transitions int,
               orders_notified int, rejected_seq int[], rejected_reason text[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_set tracking_settings;
  v_from timestamptz;
  v_to timestamptz;
  v_overtaken int;
  -- The whole batch in one statement; %s is the trail insert's conflict clause (see below). $1 is tracking_settings.
  v_apply CONSTANT text := $sql$
  WITH ordered AS (
    -- One sort, newest first within each driver: a driver's first row is its newest position, and a row with the
    -- same (driver, time) as the row before it is a repeat (the copy with the lowest seq is the one kept).
    SELECT s.*,
           lag(s.driver_id) OVER w IS DISTINCT FROM s.driver_id AS newest,
           coalesce(lag(s.driver_id) OVER w = s.driver_id AND lag(s.recorded_at) OVER w = s.recorded_at, false) AS repeat
    FROM pg_temp.position_staging s
    WINDOW w AS (ORDER BY s.driver_id, s.recorded_at DESC, s.seq)
  ), seen AS (
    -- driver_state is read once per driver of the batch; each of the driver's rows is judged on it.
    SELECT ds.driver_id, ds.status, ds.current_order_id, ds.position, ds.position_at, ds.recent_speed_mps
    FROM driver_state ds
    WHERE ds.driver_id = ANY ((SELECT array_agg(o.driver_id) FROM ordered o WHERE o.newest)::uuid[])
  ), judged_positions AS (
    SELECT o.*, v.driver_id IS NOT NULL AS known,
           NOT o.repeat AND v.driver_id IS NOT NULL AND (v.position_at IS NULL OR o.recorded_at > v.position_at) AS fresh,
           v.status AS seen_status, v.current_order_id AS order_id, v.position AS previous_geo,
           v.position_at AS previous_at, v.recent_speed_mps AS old_speed
    FROM ordered o LEFT JOIN seen v ON v.driver_id = o.driver_id
  ), latest AS MATERIALIZED (
    -- The geography is built once per moved driver and shared by the geofences, the speed and the ETA.
    SELECT a.*, ST_SetSRID(ST_MakePoint(a.lon, a.lat), 4326)::geography AS geo
    FROM judged_positions a
    WHERE a.fresh AND a.newest
  ), planned AS (
    SELECT l.*, o.status AS order_status, r.location AS restaurant_geo, o.delivery_location AS delivery_geo,
           CASE
             WHEN l.seen_status = 'offline' THEN
               CASE o.status WHEN 'assigned' THEN 'resume_assigned' WHEN 'picked_up' THEN 'resume_delivering'
                             ELSE 'online' END
             WHEN l.seen_status = 'assigned'
                  AND ST_DWithin(l.geo, r.location, ($1).restaurant_geofence_m, false) THEN 'enter_restaurant'
             WHEN l.seen_status = 'delivering'
                  AND ST_DWithin(l.geo, o.delivery_location, ($1).delivery_geofence_m, false) THEN 'enter_delivery'
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
           coalesce(($1).speed_smoothing * p.speed_sample
                    + (1 - ($1).speed_smoothing) * coalesce(p.old_speed, p.speed_sample), p.old_speed) AS new_speed
    FROM planned p
    LEFT JOIN driver_transitions t ON t.from_status = p.seen_status AND t.event = p.event
  ), estimated AS (
    -- The remaining leg: to the restaurant and on to the customer before pickup, straight to the customer after.
    SELECT j.*,
           CASE WHEN j.order_status IN ('assigned', 'picked_up') AND j.next_status <> 'offline' THEN
             ceil(($1).route_detour_factor
                  * CASE WHEN j.order_status = 'assigned'
                         THEN ST_Distance(j.geo, j.restaurant_geo, false)
                              + ST_Distance(j.restaurant_geo, j.delivery_geo, false)
                         ELSE ST_Distance(j.geo, j.delivery_geo, false) END
                  / greatest(coalesce(j.new_speed, 0), ($1).eta_floor_speed_mps))::int
           END AS eta_seconds
    FROM judged j
  ), moved AS (
    -- The row lock taken here is what makes the trail insert below safe: a driver is moved only if its position
    -- is still the one its rows were judged against. Another transaction that moved it meanwhile (two workers
    -- briefly owning one partition) leaves it out, and the caller is told to apply the batch again.
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
    WHERE ds.driver_id = ANY ((SELECT array_agg(l.driver_id) FROM latest l)::uuid[])
      AND ds.driver_id = e.driver_id
      AND ds.position_at IS NOT DISTINCT FROM e.previous_at
    RETURNING ds.driver_id, ds.status, e.order_id, e.order_status, e.seen_status, e.event,
              e.to_status IS NOT NULL AND ds.status = e.to_status AS changed,
              e.lat, e.lon, e.recorded_at, e.eta_seconds
  ), trail AS (
    -- Only drivers moved above, under their row lock: every row is newer than anything of the driver's in the
    -- trail, so a plain INSERT is enough (half the cost of ON CONFLICT's speculative insertion).
    INSERT INTO position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
    SELECT a.driver_id, a.recorded_at, a.lat, a.lon, a.h3, a.speed_kmh, a.heading_deg, a.accuracy_m, a.received_at
    FROM judged_positions a
    JOIN moved m ON m.driver_id = a.driver_id
    WHERE a.fresh
    %s
    RETURNING 1
  ), rejected AS (
    SELECT j.seq,
           CASE WHEN j.repeat THEN 'duplicate'
                WHEN NOT j.known THEN 'unknown_driver'
                -- A scalar subquery, not EXISTS: EXISTS may be planned as one hash of the whole trail.
                WHEN (SELECT true FROM position_trail t
                      WHERE t.driver_id = j.driver_id AND t.recorded_at = j.recorded_at LIMIT 1) THEN 'duplicate'
                ELSE 'out_of_order' END AS reason
    FROM judged_positions j WHERE NOT j.fresh
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
  ), refused AS (
    SELECT x.seq, x.reason FROM rejected x WHERE x.reason <> 'duplicate' ORDER BY x.seq
  )
  SELECT (SELECT count(*) FROM pg_temp.position_staging)::int,
         (SELECT count(*) FROM trail)::int,
         (SELECT count(*) FROM rejected x WHERE x.reason = 'duplicate')::int,
         (SELECT count(*) FROM refused x WHERE x.reason = 'out_of_order')::int,
         (SELECT count(*) FROM refused x WHERE x.reason = 'unknown_driver')::int,
         (SELECT count(*) FROM history)::int,
         (SELECT count(*) FROM notified)::int,
         (SELECT coalesce(array_agg(x.seq), '{}') FROM refused x),
         (SELECT coalesce(array_agg(x.reason), '{}') FROM refused x),
         ((SELECT count(*) FROM latest) - (SELECT count(*) FROM moved))::int
  $sql$;
BEGIN
  IF to_regclass('pg_temp.position_staging') IS NULL THEN
    RAISE EXCEPTION 'this session has no staging table: call open_position_staging(), COPY into position_staging, then apply'
      USING ERRCODE = 'T1500';
  END IF;
  SELECT * INTO v_set FROM tracking_settings WHERE id = 1;
  SELECT min(s.recorded_at), max(s.recorded_at) INTO v_from, v_to FROM pg_temp.position_staging s;
  PERFORM ensure_trail_partitions(v_from, v_to);
  -- Planned for each batch (EXECUTE), so its size is known to the planner without an ANALYZE of the staging table.
  BEGIN
    EXECUTE format(v_apply, '')
      INTO staged, applied, duplicate, out_of_order, unknown_driver, transitions, orders_notified,
           rejected_seq, rejected_reason, v_overtaken
      USING v_set;
  EXCEPTION WHEN unique_violation THEN
    -- A trail row this database holds beyond its driver's position (written by an earlier version of this
    -- function, or by hand): the batch again, the slow way, skipping what the trail already has.
    EXECUTE format(v_apply, 'ON CONFLICT DO NOTHING')
      INTO staged, applied, duplicate, out_of_order, unknown_driver, transitions, orders_notified,
           rejected_seq, rejected_reason, v_overtaken
      USING v_set;
  END;
  IF v_overtaken > 0 THEN
    RAISE EXCEPTION '% driver(s) of this batch were moved by another transaction while it was applied; apply it again',
      v_overtaken USING ERRCODE = '40001';
  END IF;
  -- The batch is consumed; a second batch in the same transaction starts from an empty table.
  TRUNCATE pg_temp.position_staging;
  RETURN NEXT;
END $fn$;
