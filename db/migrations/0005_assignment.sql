-- Gives a confirmed order to the nearest available driver. The caller (which has h3-js) passes the H3 cells around
-- the restaurant; candidates are available drivers in those cells whose last position reached us recently, ordered
-- by true distance (`<->`). The nearest is then locked and re-checked: a concurrent assignment that took it first
-- makes the re-check fail and the next candidate is tried, so two orders never share a driver, and the order row
-- lock means one order never gets two drivers. (Not SKIP LOCKED: the position worker briefly locks every driver
-- it moves, and skipping those would hand the order to a farther driver, or to nobody.)
-- With p_cells NULL the search is every available driver within p_max_distance_m (a slower fallback).

CREATE FUNCTION assign_nearest_driver(p_order uuid, p_cells bigint[], p_max_distance_m real DEFAULT 15000)
RETURNS orders
LANGUAGE plpgsql AS $$
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
    SELECT ds.driver_id INTO v_driver
    FROM driver_state ds
    WHERE ds.driver_id = v_candidate AND ds.status = 'available' AND ds.current_order_id IS NULL
    FOR UPDATE;
    EXIT WHEN v_driver IS NOT NULL;
  END LOOP;

  IF v_driver IS NULL THEN
    RAISE EXCEPTION 'no available driver near the restaurant of order %', p_order USING ERRCODE = 'T1409';
  END IF;
  RETURN order_transition(p_order, 'assign', v_driver);
END $$;
