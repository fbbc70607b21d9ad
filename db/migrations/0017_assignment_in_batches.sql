-- Dispatch at fleet scale (issue 16): the nearest among proposed candidates, and assignments in batches.
--
-- 0011/0015 search H3 cells: exact against the table, but every driver of the restaurant's cell is a heap read
-- (~180 at 100,000 drivers, ~4 µs each), and each assignment is its own transaction, whose commit holds the
-- notification queue's lock through its WAL flush, so assignments capped at ~1,000/s on this box.
--
-- Here the API proposes candidates (the nearest few in its in-memory index of available drivers, refreshed from
-- driver_state, api/modules/orders/driver-index.ts) and the database still decides: nearest_among ranks only those
-- few by their CURRENT rows (primary-key reads; available, free, fresh; `<->` then id, as 0011), and the claim and
-- the one-pass transition are 0015's. assign_batch assigns many orders in one transaction and a handful of
-- set-based statements: they share one commit and one flush, and a refusal costs only its order. Measured on the
-- 100,000-driver probe: 0015's statements cost ~0.45 ms of server CPU per assignment even batched in a loop; set-based,
-- a fraction of that (docs/dispatch.md).
--
-- A batch never waits for a row lock (SKIP LOCKED on the orders and the drivers): it holds the drivers it has claimed
-- until it commits, and waiting there while the worker waits for one of them would deadlock. An order whose row, or
-- whose nearest eligible driver, is locked elsewhere is returned as 55P03, and the API retries it alone with
-- assign_among, which waits as 0015 does (it holds nothing the worker wants).
--
-- What the database does not do: find drivers the API did not propose. No candidate eligible is T1409, and the API
-- then falls back to 0011's exact search over cells (assign_nearest_driver).

-- The nearest available, free, fresh driver among p_candidates, not in p_skip.
CREATE FUNCTION nearest_among(p_at geography, p_candidates uuid[], p_skip uuid[] DEFAULT '{}')
RETURNS TABLE (driver_id uuid, distance_m double precision)
LANGUAGE sql STABLE AS $$
  SELECT ds.driver_id, ds.position <-> p_at
  FROM driver_state ds
  WHERE ds.driver_id = ANY (p_candidates)
    AND ds.driver_id <> ALL (p_skip)
    AND ds.status = 'available' AND ds.current_order_id IS NULL
    AND ds.received_at > now() - make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1))
  ORDER BY ds.position <-> p_at, ds.driver_id
  LIMIT 1
$$;
--> statement-breakpoint

-- What the API's index holds (its feed, read every DISPATCH_INDEX_REFRESH_MS): every available, free, fresh driver
-- with a position. A function, so what "fresh" means stays here and the API needs no right on tracking_settings.
CREATE FUNCTION available_drivers()
RETURNS TABLE (driver_id uuid, lat double precision, lon double precision)
LANGUAGE sql STABLE AS $$
  SELECT ds.driver_id, ds.lat, ds.lon
  FROM driver_state ds
  WHERE ds.status = 'available' AND ds.current_order_id IS NULL AND ds.lat IS NOT NULL AND ds.lon IS NOT NULL
    AND ds.received_at > now() - make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1))
$$;
--> statement-breakpoint

-- One order to the nearest eligible candidate, waiting for locks as 0015 does: 0015's claim and one-pass transition
-- over the proposed drivers instead of H3 cells. The API uses it for an order assign_batch found locked (55P03).
CREATE FUNCTION assign_among(p_order uuid, p_candidates uuid[])
RETURNS orders
LANGUAGE plpgsql AS $$
DECLARE
  v_order orders;
  v_order_from order_status;
  v_order_to order_status;
  v_driver_to driver_status;
  v_restaurant geography;
  v_driver uuid;
  v_candidate uuid;
  v_skip uuid[] := '{}';
  v_fresh_after timestamptz := now() - make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1));
BEGIN
  SELECT * INTO v_order FROM orders WHERE id = p_order FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'order % does not exist', p_order USING ERRCODE = 'T1404';
  END IF;
  v_order_from := v_order.status;
  v_order_to := order_next_status(p_order, v_order_from, 'assign');
  SELECT location INTO v_restaurant FROM restaurants WHERE id = v_order.restaurant_id;

  LOOP
    SELECT n.driver_id INTO v_candidate FROM nearest_among(v_restaurant, p_candidates, v_skip) n;
    IF v_candidate IS NULL THEN
      RAISE EXCEPTION 'no proposed driver is available near the restaurant of order %', p_order USING ERRCODE = 'T1409';
    END IF;
    v_driver_to := coalesce(v_driver_to, driver_next_status(v_candidate, 'available', 'assign'));
    UPDATE driver_state
       SET status = v_driver_to, status_since = now(), current_order_id = p_order, updated_at = now()
     WHERE driver_id = v_candidate AND status = 'available' AND current_order_id IS NULL
       AND received_at > v_fresh_after
    RETURNING driver_id INTO v_driver;
    EXIT WHEN v_driver IS NOT NULL;
    v_skip := v_skip || v_candidate;
  END LOOP;

  UPDATE orders
     SET status = v_order_to, driver_id = v_driver,
         assigned_at = CASE WHEN v_order_to = 'assigned' THEN now() ELSE assigned_at END, updated_at = now()
   WHERE id = p_order
  RETURNING * INTO v_order;
  INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
  VALUES ('driver', v_driver, 'available'::text, v_driver_to::text, 'assign'),
         ('order', p_order, v_order_from::text, v_order_to::text, 'assign');
  PERFORM pg_notify('order_tracking', json_build_object('order_id', p_order, 'status', v_order_to)::text);
  RETURN v_order;
END $$;
--> statement-breakpoint

-- Several orders in one transaction and a handful of statements, whatever their number: candidate j belongs to order
-- p_candidate_of[j] (an index into p_orders). The orders are taken in the order given, each the nearest eligible
-- candidate (by `<->`, then id) that an earlier order of the batch did not take: what as many assign_among calls in
-- that order would give. One row per order: its driver, or the SQLSTATE and message that refused it: T1404 no such
-- order; T1002 the order cannot be assigned; T1409 no proposed driver is eligible; 55P03 the order, or its nearest
-- eligible candidate, is locked by another transaction (nothing is waited for: SKIP LOCKED, then the caller retries
-- that order alone with assign_among, which waits). At most 1,000 orders.
CREATE FUNCTION assign_batch(p_orders uuid[], p_candidates uuid[], p_candidate_of int[])
RETURNS TABLE (order_id uuid, driver_id uuid, error_code text, error_message text)
LANGUAGE plpgsql AS $$
DECLARE
  v_n int := coalesce(cardinality(p_orders), 0);
  v_fresh_after timestamptz := now() - make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1));
  v_driver_to driver_status;
  v_locked uuid[];
  v_mine uuid[];
  v_seen uuid[] := '{}';
  v_taken uuid[] := '{}';
  v_passed_order int[] := '{}';
  v_passed_driver uuid[] := '{}';
  v_from order_status[] := array_fill(NULL::order_status, ARRAY[v_n]);
  v_to order_status[] := array_fill(NULL::order_status, ARRAY[v_n]);
  v_driver uuid[] := array_fill(NULL::uuid, ARRAY[v_n]);
  v_code text[] := array_fill(NULL::text, ARRAY[v_n]);
  v_message text[] := array_fill(NULL::text, ARRAY[v_n]);
  r record;
BEGIN
  IF v_n > 1000 THEN
    RAISE EXCEPTION 'a batch holds at most 1,000 orders, not %', v_n USING ERRCODE = 'T1422';
  END IF;
  IF coalesce(cardinality(p_candidates), 0) <> coalesce(cardinality(p_candidate_of), 0)
     OR EXISTS (SELECT FROM unnest(p_candidate_of) c WHERE c IS NULL OR c < 1 OR c > v_n) THEN
    RAISE EXCEPTION 'p_candidate_of must name an order of p_orders for each candidate' USING ERRCODE = 'T1422';
  END IF;
  IF v_n = 0 THEN
    RETURN;
  END IF;
  -- Only an available driver is claimed, so every claim is available --assign--> (whatever driver_transitions says).
  v_driver_to := driver_next_status(NULL, 'available', 'assign');

  -- The orders this batch holds; one locked elsewhere is skipped, not waited for.
  SELECT coalesce(array_agg(l.id), '{}') INTO v_locked
  FROM (SELECT o.id FROM orders o WHERE o.id = ANY (p_orders) ORDER BY o.id FOR UPDATE SKIP LOCKED) l;
  FOR r IN
    SELECT x.i::int AS i, x.id, o.id IS NOT NULL AS found, o.status, t.to_status
    FROM unnest(p_orders) WITH ORDINALITY x(id, i)
    LEFT JOIN orders o ON o.id = x.id
    LEFT JOIN order_transitions t ON t.from_status = o.status AND t.event = 'assign'
    ORDER BY x.i
  LOOP
    IF NOT r.found THEN
      v_code[r.i] := 'T1404';
      v_message[r.i] := format('order %s does not exist', r.id);
    ELSIF NOT r.id = ANY (v_locked) OR r.id = ANY (v_seen) THEN
      v_code[r.i] := '55P03';
      v_message[r.i] := format('order %s is being changed by another transaction', r.id);
    ELSIF r.to_status IS NULL THEN
      v_code[r.i] := 'T1002';
      v_message[r.i] := format('order %s cannot go from %s to assigned', r.id, r.status);
    ELSE
      v_from[r.i] := r.status;
      v_to[r.i] := r.to_status;
    END IF;
    v_seen := v_seen || r.id;
  END LOOP;

  -- Every order's eligible candidates, nearest first; greedy in the orders' sequence (no lock taken yet). An order
  -- that passes over a driver because an earlier order of the batch chose it remembers that (v_passed_*).
  FOR r IN
    SELECT c.i::int AS i, c.driver_id
    FROM unnest(p_candidates, p_candidate_of) c(driver_id, i)
    JOIN orders o ON o.id = p_orders[c.i]
    JOIN restaurants rs ON rs.id = o.restaurant_id
    JOIN driver_state ds ON ds.driver_id = c.driver_id
    WHERE ds.status = 'available' AND ds.current_order_id IS NULL AND ds.received_at > v_fresh_after
    ORDER BY c.i, ds.position <-> rs.location, c.driver_id
  LOOP
    CONTINUE WHEN v_code[r.i] IS NOT NULL OR v_driver[r.i] IS NOT NULL;
    IF r.driver_id = ANY (v_taken) THEN
      v_passed_order := v_passed_order || r.i;
      v_passed_driver := v_passed_driver || r.driver_id;
    ELSE
      v_driver[r.i] := r.driver_id;
      v_taken := v_taken || r.driver_id;
    END IF;
  END LOOP;

  -- Lock the chosen drivers, skipping any another transaction holds (the worker moving it, another assignment) or
  -- that stopped qualifying. Such a driver's order, and any order that passed over it, is retried alone (55P03)
  -- rather than given a farther driver.
  SELECT coalesce(array_agg(l.driver_id), '{}') INTO v_mine
  FROM (SELECT ds.driver_id FROM driver_state ds
        WHERE ds.driver_id = ANY (v_taken) AND ds.status = 'available' AND ds.current_order_id IS NULL
          AND ds.received_at > v_fresh_after
        ORDER BY ds.driver_id FOR UPDATE SKIP LOCKED) l;
  IF cardinality(v_mine) < cardinality(v_taken) THEN
    FOR i IN 1 .. v_n LOOP
      IF v_driver[i] IS NOT NULL AND NOT v_driver[i] = ANY (v_mine) THEN
        v_code[i] := '55P03';
        v_message[i] := format('driver %s, the nearest for order %s, is being changed by another transaction',
                               v_driver[i], p_orders[i]);
        FOR j IN 1 .. coalesce(cardinality(v_passed_order), 0) LOOP
          IF v_passed_driver[j] = v_driver[i] AND v_code[v_passed_order[j]] IS NULL THEN
            v_code[v_passed_order[j]] := '55P03';
            v_message[v_passed_order[j]] := format('driver %s, nearer for order %s, is being changed by another transaction',
                                                   v_driver[i], p_orders[v_passed_order[j]]);
            v_driver[v_passed_order[j]] := NULL;
          END IF;
        END LOOP;
        v_driver[i] := NULL;
      END IF;
    END LOOP;
  END IF;

  FOR i IN 1 .. v_n LOOP
    IF v_code[i] IS NULL AND v_driver[i] IS NULL THEN
      v_code[i] := 'T1409';
      v_message[i] := format('no proposed driver is available near the restaurant of order %s', p_orders[i]);
    END IF;
  END LOOP;

  -- The claims, the orders, both history rows each and the orders' notices, one statement each.
  UPDATE driver_state ds
     SET status = v_driver_to, status_since = now(), current_order_id = m.order_id, updated_at = now()
    FROM unnest(p_orders, v_driver) m(order_id, driver_id)
   WHERE ds.driver_id = m.driver_id;
  UPDATE orders o
     SET status = m.to_status, driver_id = m.driver_id,
         assigned_at = CASE WHEN m.to_status = 'assigned' THEN now() ELSE o.assigned_at END, updated_at = now()
    FROM unnest(p_orders, v_driver, v_to) m(order_id, driver_id, to_status)
   WHERE o.id = m.order_id AND m.driver_id IS NOT NULL;
  INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
  SELECT e.entity, e.entity_id, e.from_status, e.to_status, 'assign'
  FROM unnest(p_orders, v_driver, v_from, v_to) WITH ORDINALITY m(order_id, driver_id, from_status, to_status, i)
  CROSS JOIN LATERAL (VALUES (1, 'driver', m.driver_id, 'available'::text, v_driver_to::text),
                             (2, 'order', m.order_id, m.from_status::text, m.to_status::text))
       e(k, entity, entity_id, from_status, to_status)
  WHERE m.driver_id IS NOT NULL
  ORDER BY m.i, e.k;
  PERFORM pg_notify('order_tracking', json_build_object('order_id', m.order_id, 'status', m.to_status)::text)
  FROM unnest(p_orders, v_driver, v_to) WITH ORDINALITY m(order_id, driver_id, to_status, i)
  WHERE m.driver_id IS NOT NULL
  ORDER BY m.i;

  RETURN QUERY
  SELECT p_orders[i], v_driver[i], v_code[i], v_message[i] FROM generate_series(1, v_n) i ORDER BY i;
END $$;
--> statement-breakpoint

-- As 0011: closed to PUBLIC (default privileges already do); the assignments run as the owner with a fixed
-- search_path and only the API may call them; the ranking is called by them and by the owner's tools.
REVOKE ALL ON FUNCTION nearest_among(geography, uuid[], uuid[]) FROM PUBLIC;
--> statement-breakpoint
REVOKE ALL ON FUNCTION available_drivers() FROM PUBLIC;
--> statement-breakpoint
REVOKE ALL ON FUNCTION assign_among(uuid, uuid[]) FROM PUBLIC;
--> statement-breakpoint
REVOKE ALL ON FUNCTION assign_batch(uuid[], uuid[], int[]) FROM PUBLIC;
--> statement-breakpoint
ALTER FUNCTION available_drivers() SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION assign_among(uuid, uuid[]) SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION assign_batch(uuid[], uuid[], int[]) SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION available_drivers() TO tracking_api;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION assign_among(uuid, uuid[]) TO tracking_api;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION assign_batch(uuid[], uuid[], int[]) TO tracking_api;
