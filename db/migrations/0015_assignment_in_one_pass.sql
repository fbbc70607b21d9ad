-- Dispatch at fleet scale (issue 16): the assignment's transition in one pass.
--
-- 0011's assign_nearest_driver found the driver, locked and re-checked it, then called order_transition (0003),
-- which locked the order a second time and ran driver_transition (the driver locked a second time, then updated),
-- updated driver_state a second time for current_order_id, and wrote the two history rows one by one: ~15
-- statements, two new versions of the driver's row. Measured on a quiet box (16 callers, 100,000 drivers),
-- order_transition alone capped assignments at ~960/s, below what the search itself allows.
--
-- Here the driver is claimed by ONE guarded UPDATE: it takes the row lock and, if a concurrent transaction held it,
-- re-evaluates the WHERE on the row as committed (PostgreSQL's EvalPlanQual), which is the lock-and-re-check of 0011
-- in one statement. If the driver was taken, went offline or went stale meanwhile, the update matches nothing and
-- the search runs again without it. The order is then updated once, both history rows are written by one INSERT,
-- and the order's notice is sent as order_transition sends it (same channel, same payload).
--
-- What does not change: the state machines decide both moves (driver_next_status, order_next_status raise T1001 /
-- T1002 on a move they do not allow); the order's row lock keeps one order from two drivers; the driver's guarded
-- update keeps two orders from one driver; the driver's status change still fires 0013's mode trigger; the
-- returned row is the order after the transition. order_transition stays as it is for every other event and for
-- callers that pass a driver themselves.

CREATE OR REPLACE FUNCTION assign_nearest_driver(p_order uuid, p_cells bigint[], p_cell_bound_m real[], p_covered_m real)
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
    -- A new statement each time: it sees what concurrent assignments committed meanwhile.
    SELECT n.driver_id INTO v_candidate
    FROM nearest_available_driver(v_restaurant, p_cells, p_cell_bound_m, p_covered_m, v_skip) n;
    IF v_candidate IS NULL THEN
      RAISE EXCEPTION 'no available driver near the restaurant of order %', p_order USING ERRCODE = 'T1409';
    END IF;
    -- Only an available driver is claimed, so its move is available --assign--> (whatever driver_transitions says).
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

-- CREATE OR REPLACE resets what 0011 set (grants stay): runs as the owner with a fixed search_path, as before.
ALTER FUNCTION assign_nearest_driver(uuid, bigint[], real[], real) SECURITY DEFINER SET search_path = public, pg_temp;
