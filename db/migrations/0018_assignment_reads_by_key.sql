-- Dispatch reads only the drivers it was given, whatever the statistics say (issue 16).
--
-- 0017's statements named the proposed drivers AND the "available" condition on driver_state. The planner may then
-- read driver_state through its partial index of available drivers (driver_state_available_h3) and filter by id:
-- cheap while the statistics say few drivers are available, a scan of the whole available fleet when they all are.
-- A day starts with every driver offline, and statistics taken then stay until the next ANALYZE: measured in
-- bench:e2e with dispatch beside ingest (100,000 drivers generated offline, then all online), each assign_batch read
-- every available driver twice: 35 ms on average and up to 1.3 s, 32 s of a 105 s run at 20 orders/s, while
-- ingest stalled for seconds (docs/dispatch.md).
--
-- Here every read of driver_state in an assignment goes through its primary key: the row is fetched (or locked) by
-- its id alone in a subquery the planner cannot flatten or push conditions into (OFFSET 0), and the conditions are
-- judged on the row it returns. The choices and the refusals are 0017's.

-- The nearest available, free, fresh driver among p_candidates, not in p_skip (0017), each read by its key.
CREATE OR REPLACE FUNCTION nearest_among(p_at geography, p_candidates uuid[], p_skip uuid[] DEFAULT '{}')
RETURNS TABLE (driver_id uuid, distance_m double precision)
LANGUAGE sql STABLE AS $$
  SELECT ds.driver_id, ds.position <-> p_at
  FROM (SELECT DISTINCT c.id FROM unnest(p_candidates) c(id)) c
  CROSS JOIN LATERAL (SELECT d.driver_id, d.status, d.current_order_id, d.received_at, d.position
                      FROM driver_state d WHERE d.driver_id = c.id OFFSET 0) ds
  WHERE ds.driver_id <> ALL (p_skip)
    AND ds.status = 'available' AND ds.current_order_id IS NULL
    AND ds.received_at > now() - make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1))
  ORDER BY ds.position <-> p_at, ds.driver_id
  LIMIT 1
$$;
--> statement-breakpoint

-- assign_among (0017): the candidate is locked by its key, then judged.
CREATE OR REPLACE FUNCTION assign_among(p_order uuid, p_candidates uuid[])
RETURNS orders
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
    -- Locked by its key (waiting as 0015 does), then judged on the row it locked; claimed by its key. A candidate
    -- that no longer qualifies stays locked until this transaction ends, harmless for so short a time.
    SELECT l.driver_id INTO v_driver
    FROM (SELECT d.driver_id, d.status, d.current_order_id, d.received_at
          FROM driver_state d WHERE d.driver_id = v_candidate OFFSET 0 FOR UPDATE) l
    WHERE l.status = 'available' AND l.current_order_id IS NULL AND l.received_at > v_fresh_after;
    IF v_driver IS NOT NULL THEN
      UPDATE driver_state
         SET status = v_driver_to, status_since = now(), current_order_id = p_order, updated_at = now()
       WHERE driver_id = v_driver;
      EXIT;
    END IF;
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

-- assign_batch (0017): the candidates are read, and the chosen drivers locked, by their keys.
CREATE OR REPLACE FUNCTION assign_batch(p_orders uuid[], p_candidates uuid[], p_candidate_of int[])
RETURNS TABLE (order_id uuid, driver_id uuid, error_code text, error_message text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
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
    CROSS JOIN LATERAL (SELECT d.status, d.current_order_id, d.received_at, d.position
                        FROM driver_state d WHERE d.driver_id = c.driver_id OFFSET 0) ds
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
  FROM (SELECT ds.driver_id, ds.status, ds.current_order_id, ds.received_at FROM driver_state ds
        WHERE ds.driver_id = ANY (v_taken)
        ORDER BY ds.driver_id OFFSET 0 FOR UPDATE SKIP LOCKED) l
  WHERE l.status = 'available' AND l.current_order_id IS NULL AND l.received_at > v_fresh_after;
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
