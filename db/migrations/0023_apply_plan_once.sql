-- apply_position_batch plans its statement once per session instead of once per batch (issue #12, cost per
-- position). Results and rules are unchanged (0008, 0012).
--
-- Since 0007 the whole batch was one dynamic statement (EXECUTE), parsed and planned on every call; the function
-- then TRUNCATEd the session's staging table. Planning that statement costs ~3.8 ms a call whatever the batch holds
-- (an apply of 4 positions took 4.6 ms, 0.9 ms of it running: bench/results/apply-planning-2026-12-01T13-05-00Z.json),
-- and the worker makes ~15-20 calls a second at 25,000 positions/s; perf put 10.6% of PostgreSQL's time in the
-- planner (bench/results/pg-profile-2026-12-01T13-01-21-178Z.json).
--
-- Now the fast path is a static statement, which PL/pgSQL plans for its first calls and then keeps as a generic
-- plan. Two things make the kept plan as cheap to run as the per-call one:
--   * The staging table is emptied with DELETE: a TRUNCATE gave it a new file on every call, which invalidated
--     the plan.
--   * The settings are read into scalar variables. The per-call plan had the settings row as a value and folded
--     its fields into constants; a kept plan would take each field out of the row on every row (twice per row
--     for the future-skew allowance, with a numeric division and make_interval each time). A first version that
--     kept the row did not beat the per-call plan at 2,000-10,000 positions a call (the same file).
--     position_hop_too_fast is position_hop_impossible with the two limits as arguments, for the same reason.
-- The plan is still made again when a table it reads changes shape (a new trail partition, an ANALYZE of
-- driver_state): minutes apart. The slow path (ON CONFLICT DO NOTHING after a unique violation, 0007) stays 0012's
-- dynamic text, so the statement is here twice: once as SQL, once as that path's text.

-- Is the hop faster than max_speed_m_per_s and longer than noise_m? (position_hop_impossible with scalar limits.)
CREATE FUNCTION position_hop_too_fast(from_lat double precision, from_lon double precision, from_at timestamptz,
                                      to_lat double precision, to_lon double precision, to_at timestamptz,
                                      noise_m real, max_speed_m_per_s real)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT position_hop_m(from_lat, from_lon, to_lat, to_lon)
         > greatest(noise_m, max_speed_m_per_s * greatest(extract(epoch FROM to_at - from_at), 0.001))
$$;
--> statement-breakpoint
-- Inlined into the apply only if the worker may execute it (0009).
GRANT EXECUTE ON FUNCTION position_hop_too_fast(double precision, double precision, timestamptz, double precision,
                                                double precision, timestamptz, real, real) TO tracking_worker;
--> statement-breakpoint

CREATE OR REPLACE FUNCTION apply_position_batch()
RETURNS TABLE (staged int, applied int, duplicate int, out_of_order int, unknown_driver int, transitions int,
               orders_notified int, rejected_seq int[], rejected_reason text[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_set tracking_settings;
  v_from timestamptz;
  v_to timestamptz;
  v_overtaken int;
  -- The settings the fast path reads, as scalars (see above).
  v_future_skew interval;
  v_noise_m real;
  v_max_speed real;
  v_set_restaurant_geofence_m real;
  v_set_delivery_geofence_m real;
  v_set_speed_smoothing real;
  v_set_route_detour_factor real;
  v_set_eta_floor_speed_mps real;
  v_set_reanchor_after smallint;
  -- The slow path's text (0012's statement): %s is the trail insert's conflict clause, $1 is tracking_settings.
  v_apply CONSTANT text := $sql$
  WITH RECURSIVE ordered AS (
    -- One sort, newest first within each driver: a driver's first row is its newest position, a row with the same
    -- (driver, time) as the row before it is a repeat, and the row after it is the fix before it in time (the one
    -- its hop is judged from, when that one is accepted too).
    SELECT s.*,
           lag(s.driver_id) OVER w IS DISTINCT FROM s.driver_id AS newest,
           coalesce(lag(s.driver_id) OVER w = s.driver_id AND lag(s.recorded_at) OVER w = s.recorded_at, false) AS repeat,
           s.received_at IS NOT NULL
             AND s.recorded_at > s.received_at + make_interval(secs => ($1).max_future_skew_ms / 1000.0) AS future,
           coalesce(lead(s.driver_id) OVER w = s.driver_id, false) AS has_older,
           lead(s.recorded_at) OVER w AS older_at,
           lead(s.lat) OVER w AS older_lat,
           lead(s.lon) OVER w AS older_lon,
           lead(s.received_at IS NOT NULL
                AND s.recorded_at > s.received_at + make_interval(secs => ($1).max_future_skew_ms / 1000.0)) OVER w
             AS older_future
    FROM pg_temp.position_staging s
    WINDOW w AS (ORDER BY s.driver_id, s.recorded_at DESC, s.seq)
  ), seen AS (
    SELECT ds.driver_id, ds.status, ds.current_order_id, ds.position, ds.position_at, ds.recent_speed_mps,
           ds.lat, ds.lon, ds.implausible_streak, ds.implausible_at
    FROM driver_state ds
    WHERE ds.driver_id = ANY ((SELECT array_agg(o.driver_id) FROM ordered o WHERE o.newest)::uuid[])
  ), judged_positions AS MATERIALIZED (
    SELECT o.*, v.driver_id IS NOT NULL AS known,
           NOT o.repeat AND v.driver_id IS NOT NULL AND (v.position_at IS NULL OR o.recorded_at > v.position_at) AS newer,
           v.status AS seen_status, v.current_order_id AS order_id, v.position AS previous_geo,
           v.position_at AS previous_at, v.recent_speed_mps AS old_speed,
           v.lat AS previous_lat, v.lon AS previous_lon, v.implausible_streak AS old_streak,
           v.implausible_at AS old_implausible_at,
           -- The fix this one's hop starts from, if every fix of the driver is accepted: the next older row of the
           -- batch if it is newer than the driver's position, else the driver's position.
           o.has_older AND (v.position_at IS NULL OR o.older_at > v.position_at) AS from_batch
    FROM ordered o LEFT JOIN seen v ON v.driver_id = o.driver_id
  ), suspects AS (
    -- Drivers whose fixes cannot all be accepted at once: a hop too fast, a future fix, or a repeat or future fix
    -- right behind a fix (so the window's "fix before" is not the one to judge from). Usually none.
    SELECT DISTINCT j.driver_id
    FROM judged_positions j
    WHERE j.newer AND (
      j.future
      OR (j.from_batch AND (j.older_at = j.recorded_at OR j.older_future))
      OR (CASE WHEN j.from_batch
               THEN position_hop_impossible(j.older_lat, j.older_lon, j.older_at, j.lat, j.lon, j.recorded_at, $1)
               WHEN j.previous_at IS NOT NULL AND j.previous_lat IS NOT NULL
               THEN position_hop_impossible(j.previous_lat, j.previous_lon, j.previous_at, j.lat, j.lon,
                                            j.recorded_at, $1)
               ELSE false END)
    )
  ), steps AS MATERIALIZED (
    -- A suspect driver's acceptable-looking fixes (newer, not repeated, not future), oldest first.
    SELECT j.driver_id, j.seq, j.lat, j.lon, j.recorded_at,
           row_number() OVER (PARTITION BY j.driver_id ORDER BY j.recorded_at) AS rn
    FROM judged_positions j
    WHERE j.newer AND NOT j.future AND j.driver_id IN (SELECT x.driver_id FROM suspects x)
  ), walk AS (
    -- One fix at a time from the last accepted one (a_*): accepted if plausible, or if it is the reanchor_after-th
    -- impossible fix in a row. A refused fix counts towards that only if newer than the last one counted.
    SELECT v.driver_id, 0::bigint AS rn, NULL::int AS seq, NULL::boolean AS ok,
           v.lat AS a_lat, v.lon AS a_lon, v.position_at AS a_at,
           v.implausible_streak::int AS streak, v.implausible_at AS struck_at
    FROM suspects x JOIN seen v ON v.driver_id = x.driver_id
    UNION ALL
    SELECT w.driver_id, s.rn, s.seq, d.ok,
           CASE WHEN d.ok THEN s.lat ELSE w.a_lat END, CASE WHEN d.ok THEN s.lon ELSE w.a_lon END,
           CASE WHEN d.ok THEN s.recorded_at ELSE w.a_at END,
           CASE WHEN d.ok THEN 0 WHEN d.counted THEN w.streak + 1 ELSE w.streak END,
           CASE WHEN d.counted THEN s.recorded_at ELSE w.struck_at END
    FROM walk w
    JOIN steps s ON s.driver_id = w.driver_id AND s.rn = w.rn + 1
    CROSS JOIN LATERAL (
      SELECT p.plausible OR (p.counted AND w.streak + 1 >= ($1).reanchor_after) AS ok, p.counted
      FROM (SELECT q.plausible, NOT q.plausible AND (w.struck_at IS NULL OR s.recorded_at > w.struck_at) AS counted
            FROM (SELECT w.a_at IS NULL OR w.a_lat IS NULL
                         OR NOT position_hop_impossible(w.a_lat, w.a_lon, w.a_at, s.lat, s.lon, s.recorded_at, $1)
                         AS plausible) q) p
    ) d
  ), walked AS MATERIALIZED (
    SELECT w.* FROM walk w WHERE w.seq IS NOT NULL
  ), walk_end AS (
    -- Where each suspect driver's walk ended: its strike count and, if any fix was accepted, the newest of them.
    SELECT DISTINCT ON (w.driver_id) w.driver_id, w.streak, w.struck_at, w.a_at
    FROM walk w ORDER BY w.driver_id, w.rn DESC
  ), latest AS MATERIALIZED (
    -- Each moved driver's newest accepted fix: its newest row if it took no walk (every newer fix was accepted), else
    -- where its walk ended. The geography is built once per moved driver, for the geofences, the speed and the ETA.
    SELECT j.*, ST_SetSRID(ST_MakePoint(j.lon, j.lat), 4326)::geography AS geo, we.streak AS new_streak,
           we.struck_at AS new_implausible_at
    FROM judged_positions j
    LEFT JOIN walk_end we ON we.driver_id = j.driver_id
    WHERE j.newer AND NOT j.future AND CASE WHEN we.driver_id IS NULL THEN j.newest ELSE j.recorded_at = we.a_at END
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
    -- See 0007: the row lock taken here, and the optimistic check on position_at, keep the plain trail INSERT safe.
    UPDATE driver_state ds SET
      position = e.geo, lat = e.lat, lon = e.lon, h3 = e.h3,
      speed_kmh = e.speed_kmh, heading_deg = e.heading_deg, accuracy_m = e.accuracy_m,
      battery_pct = coalesce(e.battery_pct, ds.battery_pct),
      position_at = e.recorded_at, received_at = e.received_at, recent_speed_mps = e.new_speed,
      eta_seconds = e.eta_seconds,
      implausible_streak = coalesce(e.new_streak, 0),
      implausible_at = coalesce(e.new_implausible_at, ds.implausible_at),
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
  ), struck AS (
    -- Drivers none of whose fixes was accepted keep their position but remember the strikes (a driver moved by
    -- another transaction meanwhile is left alone: its strikes were judged against a position it no longer has).
    UPDATE driver_state ds SET implausible_streak = we.streak, implausible_at = we.struck_at
    FROM walk_end we JOIN seen v ON v.driver_id = we.driver_id
    WHERE ds.driver_id = we.driver_id
      AND we.a_at IS NOT DISTINCT FROM v.position_at
      AND (we.streak, we.struck_at) IS DISTINCT FROM (v.implausible_streak::int, v.implausible_at)
      AND ds.position_at IS NOT DISTINCT FROM v.position_at
    RETURNING 1
  ), trail AS (
    INSERT INTO position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
    SELECT a.driver_id, a.recorded_at, a.lat, a.lon, a.h3, a.speed_kmh, a.heading_deg, a.accuracy_m, a.received_at
    FROM judged_positions a
    JOIN moved m ON m.driver_id = a.driver_id
    -- Accepted: newer, not future, and not refused on its walk (a hashed look-up in the usually empty walk).
    WHERE a.newer AND NOT a.future AND a.seq NOT IN (SELECT w.seq FROM walked w WHERE NOT w.ok)
    %s
    RETURNING 1
  ), rejected AS (
    SELECT j.seq,
           CASE WHEN j.repeat THEN 'duplicate'
                WHEN NOT j.known THEN 'unknown_driver'
                -- A scalar subquery, not EXISTS: EXISTS may be planned as one hash of the whole trail.
                WHEN (SELECT true FROM position_trail t
                      WHERE t.driver_id = j.driver_id AND t.recorded_at = j.recorded_at LIMIT 1) THEN 'duplicate'
                WHEN j.future THEN 'future_timestamp'
                ELSE 'out_of_order' END AS reason
    FROM judged_positions j WHERE NOT j.newer OR j.future
    UNION ALL
    SELECT w.seq, 'impossible_speed' FROM walked w WHERE NOT w.ok
  ), history AS (
    INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
    SELECT 'driver', m.driver_id, m.seen_status, m.status, m.event FROM moved m WHERE m.changed
    RETURNING 1
  ), notified AS (
    -- One notice per live order moved, sent (or skipped and counted) by notify_order_tracking: one call per batch.
    SELECT notify_order_tracking(array_agg(json_build_object(
             'order_id', m.order_id, 'status', m.order_status, 'driver_id', m.driver_id, 'driver_state', m.status,
             'lat', m.lat, 'lon', m.lon, 'at', m.recorded_at, 'eta_seconds', m.eta_seconds)::text)) AS sent
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
         (SELECT n.sent FROM notified n),
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
  v_future_skew := make_interval(secs => v_set.max_future_skew_ms / 1000.0);
  v_noise_m := v_set.speed_noise_m;
  v_max_speed := v_set.max_speed_m_per_s;
  v_set_restaurant_geofence_m := v_set.restaurant_geofence_m;
  v_set_delivery_geofence_m := v_set.delivery_geofence_m;
  v_set_speed_smoothing := v_set.speed_smoothing;
  v_set_route_detour_factor := v_set.route_detour_factor;
  v_set_eta_floor_speed_mps := v_set.eta_floor_speed_mps;
  v_set_reanchor_after := v_set.reanchor_after;
  SELECT min(s.recorded_at), max(s.recorded_at) INTO v_from, v_to FROM pg_temp.position_staging s;
  PERFORM ensure_trail_partitions(v_from, v_to);
  BEGIN
    -- The fast path, planned once per session (above).

  WITH RECURSIVE ordered AS (
    -- One sort, newest first within each driver: a driver's first row is its newest position, a row with the same
    -- (driver, time) as the row before it is a repeat, and the row after it is the fix before it in time (the one
    -- its hop is judged from, when that one is accepted too).
    SELECT s.*,
           lag(s.driver_id) OVER w IS DISTINCT FROM s.driver_id AS newest,
           coalesce(lag(s.driver_id) OVER w = s.driver_id AND lag(s.recorded_at) OVER w = s.recorded_at, false) AS repeat,
           s.received_at IS NOT NULL
             AND s.recorded_at > s.received_at + v_future_skew AS future,
           coalesce(lead(s.driver_id) OVER w = s.driver_id, false) AS has_older,
           lead(s.recorded_at) OVER w AS older_at,
           lead(s.lat) OVER w AS older_lat,
           lead(s.lon) OVER w AS older_lon,
           lead(s.received_at IS NOT NULL
                AND s.recorded_at > s.received_at + v_future_skew) OVER w
             AS older_future
    FROM pg_temp.position_staging s
    WINDOW w AS (ORDER BY s.driver_id, s.recorded_at DESC, s.seq)
  ), seen AS (
    SELECT ds.driver_id, ds.status, ds.current_order_id, ds.position, ds.position_at, ds.recent_speed_mps,
           ds.lat, ds.lon, ds.implausible_streak, ds.implausible_at
    FROM driver_state ds
    WHERE ds.driver_id = ANY ((SELECT array_agg(o.driver_id) FROM ordered o WHERE o.newest)::uuid[])
  ), judged_positions AS MATERIALIZED (
    SELECT o.*, v.driver_id IS NOT NULL AS known,
           NOT o.repeat AND v.driver_id IS NOT NULL AND (v.position_at IS NULL OR o.recorded_at > v.position_at) AS newer,
           v.status AS seen_status, v.current_order_id AS order_id, v.position AS previous_geo,
           v.position_at AS previous_at, v.recent_speed_mps AS old_speed,
           v.lat AS previous_lat, v.lon AS previous_lon, v.implausible_streak AS old_streak,
           v.implausible_at AS old_implausible_at,
           -- The fix this one's hop starts from, if every fix of the driver is accepted: the next older row of the
           -- batch if it is newer than the driver's position, else the driver's position.
           o.has_older AND (v.position_at IS NULL OR o.older_at > v.position_at) AS from_batch
    FROM ordered o LEFT JOIN seen v ON v.driver_id = o.driver_id
  ), suspects AS (
    -- Drivers whose fixes cannot all be accepted at once: a hop too fast, a future fix, or a repeat or future fix
    -- right behind a fix (so the window's "fix before" is not the one to judge from). Usually none.
    SELECT DISTINCT j.driver_id
    FROM judged_positions j
    WHERE j.newer AND (
      j.future
      OR (j.from_batch AND (j.older_at = j.recorded_at OR j.older_future))
      OR (CASE WHEN j.from_batch
               THEN position_hop_too_fast(j.older_lat, j.older_lon, j.older_at, j.lat, j.lon, j.recorded_at, v_noise_m, v_max_speed)
               WHEN j.previous_at IS NOT NULL AND j.previous_lat IS NOT NULL
               THEN position_hop_too_fast(j.previous_lat, j.previous_lon, j.previous_at, j.lat, j.lon,
                                            j.recorded_at, v_noise_m, v_max_speed)
               ELSE false END)
    )
  ), steps AS MATERIALIZED (
    -- A suspect driver's acceptable-looking fixes (newer, not repeated, not future), oldest first.
    SELECT j.driver_id, j.seq, j.lat, j.lon, j.recorded_at,
           row_number() OVER (PARTITION BY j.driver_id ORDER BY j.recorded_at) AS rn
    FROM judged_positions j
    WHERE j.newer AND NOT j.future AND j.driver_id IN (SELECT x.driver_id FROM suspects x)
  ), walk AS (
    -- One fix at a time from the last accepted one (a_*): accepted if plausible, or if it is the reanchor_after-th
    -- impossible fix in a row. A refused fix counts towards that only if newer than the last one counted.
    SELECT v.driver_id, 0::bigint AS rn, NULL::int AS seq, NULL::boolean AS ok,
           v.lat AS a_lat, v.lon AS a_lon, v.position_at AS a_at,
           v.implausible_streak::int AS streak, v.implausible_at AS struck_at
    FROM suspects x JOIN seen v ON v.driver_id = x.driver_id
    UNION ALL
    SELECT w.driver_id, s.rn, s.seq, d.ok,
           CASE WHEN d.ok THEN s.lat ELSE w.a_lat END, CASE WHEN d.ok THEN s.lon ELSE w.a_lon END,
           CASE WHEN d.ok THEN s.recorded_at ELSE w.a_at END,
           CASE WHEN d.ok THEN 0 WHEN d.counted THEN w.streak + 1 ELSE w.streak END,
           CASE WHEN d.counted THEN s.recorded_at ELSE w.struck_at END
    FROM walk w
    JOIN steps s ON s.driver_id = w.driver_id AND s.rn = w.rn + 1
    CROSS JOIN LATERAL (
      SELECT p.plausible OR (p.counted AND w.streak + 1 >= v_set_reanchor_after) AS ok, p.counted
      FROM (SELECT q.plausible, NOT q.plausible AND (w.struck_at IS NULL OR s.recorded_at > w.struck_at) AS counted
            FROM (SELECT w.a_at IS NULL OR w.a_lat IS NULL
                         OR NOT position_hop_too_fast(w.a_lat, w.a_lon, w.a_at, s.lat, s.lon, s.recorded_at, v_noise_m, v_max_speed)
                         AS plausible) q) p
    ) d
  ), walked AS MATERIALIZED (
    SELECT w.* FROM walk w WHERE w.seq IS NOT NULL
  ), walk_end AS (
    -- Where each suspect driver's walk ended: its strike count and, if any fix was accepted, the newest of them.
    SELECT DISTINCT ON (w.driver_id) w.driver_id, w.streak, w.struck_at, w.a_at
    FROM walk w ORDER BY w.driver_id, w.rn DESC
  ), latest AS MATERIALIZED (
    -- Each moved driver's newest accepted fix: its newest row if it took no walk (every newer fix was accepted), else
    -- where its walk ended. The geography is built once per moved driver, for the geofences, the speed and the ETA.
    SELECT j.*, ST_SetSRID(ST_MakePoint(j.lon, j.lat), 4326)::geography AS geo, we.streak AS new_streak,
           we.struck_at AS new_implausible_at
    FROM judged_positions j
    LEFT JOIN walk_end we ON we.driver_id = j.driver_id
    WHERE j.newer AND NOT j.future AND CASE WHEN we.driver_id IS NULL THEN j.newest ELSE j.recorded_at = we.a_at END
  ), planned AS (
    SELECT l.*, o.status AS order_status, r.location AS restaurant_geo, o.delivery_location AS delivery_geo,
           CASE
             WHEN l.seen_status = 'offline' THEN
               CASE o.status WHEN 'assigned' THEN 'resume_assigned' WHEN 'picked_up' THEN 'resume_delivering'
                             ELSE 'online' END
             WHEN l.seen_status = 'assigned'
                  AND ST_DWithin(l.geo, r.location, v_set_restaurant_geofence_m, false) THEN 'enter_restaurant'
             WHEN l.seen_status = 'delivering'
                  AND ST_DWithin(l.geo, o.delivery_location, v_set_delivery_geofence_m, false) THEN 'enter_delivery'
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
           coalesce(v_set_speed_smoothing * p.speed_sample
                    + (1 - v_set_speed_smoothing) * coalesce(p.old_speed, p.speed_sample), p.old_speed) AS new_speed
    FROM planned p
    LEFT JOIN driver_transitions t ON t.from_status = p.seen_status AND t.event = p.event
  ), estimated AS (
    SELECT j.*,
           CASE WHEN j.order_status IN ('assigned', 'picked_up') AND j.next_status <> 'offline' THEN
             ceil(v_set_route_detour_factor
                  * CASE WHEN j.order_status = 'assigned'
                         THEN ST_Distance(j.geo, j.restaurant_geo, false)
                              + ST_Distance(j.restaurant_geo, j.delivery_geo, false)
                         ELSE ST_Distance(j.geo, j.delivery_geo, false) END
                  / greatest(coalesce(j.new_speed, 0), v_set_eta_floor_speed_mps))::int
           END AS eta_seconds
    FROM judged j
  ), moved AS (
    -- See 0007: the row lock taken here, and the optimistic check on position_at, keep the plain trail INSERT safe.
    UPDATE driver_state ds SET
      position = e.geo, lat = e.lat, lon = e.lon, h3 = e.h3,
      speed_kmh = e.speed_kmh, heading_deg = e.heading_deg, accuracy_m = e.accuracy_m,
      battery_pct = coalesce(e.battery_pct, ds.battery_pct),
      position_at = e.recorded_at, received_at = e.received_at, recent_speed_mps = e.new_speed,
      eta_seconds = e.eta_seconds,
      implausible_streak = coalesce(e.new_streak, 0),
      implausible_at = coalesce(e.new_implausible_at, ds.implausible_at),
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
  ), struck AS (
    -- Drivers none of whose fixes was accepted keep their position but remember the strikes (a driver moved by
    -- another transaction meanwhile is left alone: its strikes were judged against a position it no longer has).
    UPDATE driver_state ds SET implausible_streak = we.streak, implausible_at = we.struck_at
    FROM walk_end we JOIN seen v ON v.driver_id = we.driver_id
    WHERE ds.driver_id = we.driver_id
      AND we.a_at IS NOT DISTINCT FROM v.position_at
      AND (we.streak, we.struck_at) IS DISTINCT FROM (v.implausible_streak::int, v.implausible_at)
      AND ds.position_at IS NOT DISTINCT FROM v.position_at
    RETURNING 1
  ), trail AS (
    INSERT INTO position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
    SELECT a.driver_id, a.recorded_at, a.lat, a.lon, a.h3, a.speed_kmh, a.heading_deg, a.accuracy_m, a.received_at
    FROM judged_positions a
    JOIN moved m ON m.driver_id = a.driver_id
    -- Accepted: newer, not future, and not refused on its walk (a hashed look-up in the usually empty walk).
    WHERE a.newer AND NOT a.future AND a.seq NOT IN (SELECT w.seq FROM walked w WHERE NOT w.ok)
    RETURNING 1
  ), rejected AS (
    SELECT j.seq,
           CASE WHEN j.repeat THEN 'duplicate'
                WHEN NOT j.known THEN 'unknown_driver'
                -- A scalar subquery, not EXISTS: EXISTS may be planned as one hash of the whole trail.
                WHEN (SELECT true FROM position_trail t
                      WHERE t.driver_id = j.driver_id AND t.recorded_at = j.recorded_at LIMIT 1) THEN 'duplicate'
                WHEN j.future THEN 'future_timestamp'
                ELSE 'out_of_order' END AS reason
    FROM judged_positions j WHERE NOT j.newer OR j.future
    UNION ALL
    SELECT w.seq, 'impossible_speed' FROM walked w WHERE NOT w.ok
  ), history AS (
    INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
    SELECT 'driver', m.driver_id, m.seen_status, m.status, m.event FROM moved m WHERE m.changed
    RETURNING 1
  ), notified AS (
    -- One notice per live order moved, sent (or skipped and counted) by notify_order_tracking: one call per batch.
    SELECT notify_order_tracking(array_agg(json_build_object(
             'order_id', m.order_id, 'status', m.order_status, 'driver_id', m.driver_id, 'driver_state', m.status,
             'lat', m.lat, 'lon', m.lon, 'at', m.recorded_at, 'eta_seconds', m.eta_seconds)::text)) AS sent
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
         (SELECT n.sent FROM notified n),
         (SELECT coalesce(array_agg(x.seq), '{}') FROM refused x),
         (SELECT coalesce(array_agg(x.reason), '{}') FROM refused x),
         ((SELECT count(*) FROM latest) - (SELECT count(*) FROM moved))::int
  INTO staged, applied, duplicate, out_of_order, unknown_driver, transitions, orders_notified,
       rejected_seq, rejected_reason, v_overtaken;
  EXCEPTION WHEN unique_violation THEN
    EXECUTE format(v_apply, 'ON CONFLICT DO NOTHING')
      INTO staged, applied, duplicate, out_of_order, unknown_driver, transitions, orders_notified,
           rejected_seq, rejected_reason, v_overtaken
      USING v_set;
  END;
  IF v_overtaken > 0 THEN
    RAISE EXCEPTION '% driver(s) of this batch were moved by another transaction while it was applied; apply it again',
      v_overtaken USING ERRCODE = '40001';
  END IF;
  -- The batch is consumed; a second batch in the same transaction starts from an empty table. A DELETE: a TRUNCATE
  -- gives the table a new file, which invalidates every plan that reads it (ON COMMIT DELETE ROWS empties it at
  -- commit anyway).
  DELETE FROM pg_temp.position_staging;
  RETURN NEXT;
END $fn$;
