-- The exact search's claims read by key, whatever the statistics say (issue 16; 0018 did the same for dispatch by
-- proposals).
--
-- assign_nearest_driver (0015, the fallback when the API's index proposes nobody still free, and the only path with
-- DISPATCH_INDEX_REFRESH_MS=0) and its older form (0005) find their candidates through the partial index of
-- available drivers, by cell, which is right whatever the statistics say. But each then claims its candidate with
-- a statement naming the driver's id AND "available": with statistics taken while the fleet was offline the planner
-- may read that one row through the partial index, that is every available driver (0018's header). Here the
-- candidate is locked by its id alone, in a subquery the planner cannot flatten or push conditions into, and judged
-- on the row it locked. What each returns or refuses is unchanged.

-- 0015's form (the fallback).
CREATE OR REPLACE FUNCTION assign_nearest_driver(p_order uuid, p_cells bigint[], p_cell_bound_m real[], p_covered_m real)
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
    -- A new statement each time: it sees what concurrent assignments committed meanwhile.
    SELECT n.driver_id INTO v_candidate
    FROM nearest_available_driver(v_restaurant, p_cells, p_cell_bound_m, p_covered_m, v_skip) n;
    IF v_candidate IS NULL THEN
      RAISE EXCEPTION 'no available driver near the restaurant of order %', p_order USING ERRCODE = 'T1409';
    END IF;
    -- Only an available driver is claimed, so its move is available --assign--> (whatever driver_transitions says).
    v_driver_to := coalesce(v_driver_to, driver_next_status(v_candidate, 'available', 'assign'));
    -- Locked by its key, then judged on the row it locked; claimed by its key (0018's assign_among).
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

-- 0005's form (kept for old callers).
CREATE OR REPLACE FUNCTION assign_nearest_driver(p_order uuid, p_cells bigint[], p_max_distance_m real DEFAULT 15000)
RETURNS orders
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_order orders;
  v_restaurant geography;
  v_driver uuid;
  v_candidate uuid;
  v_fresh_after timestamptz := now() - make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1));
BEGIN
  SELECT * INTO v_order FROM orders WHERE id = p_order FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'order % does not exist', p_order USING ERRCODE = 'T1404';
  END IF;
  PERFORM order_next_status(p_order, v_order.status, 'assign');
  SELECT location INTO v_restaurant FROM restaurants WHERE id = v_order.restaurant_id;

  FOR v_candidate IN
    SELECT ds.driver_id
    FROM driver_state ds
    WHERE ds.status = 'available'
      AND ds.current_order_id IS NULL
      AND ds.received_at > v_fresh_after
      AND (CASE WHEN p_cells IS NULL THEN ST_DWithin(ds.position, v_restaurant, p_max_distance_m, false)
                ELSE ds.h3 = ANY (p_cells) END)
    ORDER BY ds.position <-> v_restaurant
    LIMIT 20
  LOOP
    SELECT l.driver_id INTO v_driver
    FROM (SELECT ds.driver_id, ds.status, ds.current_order_id
          FROM driver_state ds WHERE ds.driver_id = v_candidate OFFSET 0 FOR UPDATE) l
    WHERE l.status = 'available' AND l.current_order_id IS NULL;
    EXIT WHEN v_driver IS NOT NULL;
  END LOOP;

  IF v_driver IS NULL THEN
    RAISE EXCEPTION 'no available driver near the restaurant of order %', p_order USING ERRCODE = 'T1409';
  END IF;
  RETURN order_transition(p_order, 'assign', v_driver);
END $$;
