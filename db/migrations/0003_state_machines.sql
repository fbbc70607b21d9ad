-- The driver and order state machines. Their allowed moves are rows (driver_transitions, order_transitions); the
-- functions below and the batch apply consult those rows, so the machines are defined exactly once.
-- Refusals raise their own SQLSTATEs (class T1), which the API maps to HTTP answers:
--   T1001 driver transition refused   T1002 order transition refused   T1404 unknown driver/order
--   T1409 no available driver         T1422 invalid argument            T1500 staging table not opened

INSERT INTO driver_transitions (from_status, event, to_status) VALUES
  ('offline',       'online',           'available'),
  ('available',     'assign',           'assigned'),
  ('assigned',      'enter_restaurant', 'at_restaurant'),
  ('assigned',      'cancel',           'available'),
  ('at_restaurant', 'cancel',           'available'),
  ('at_restaurant', 'pickup',           'delivering'),
  ('delivering',    'enter_delivery',   'arriving'),
  ('arriving',      'deliver',          'available'),
  -- A driver who went offline mid-order and reports again goes back to the order's leg, not to `available`.
  ('offline',       'resume_assigned',  'assigned'),
  ('offline',       'resume_delivering','delivering'),
  ('available',     'sign_off',         'offline'),
  ('assigned',      'sign_off',         'offline'),
  ('at_restaurant', 'sign_off',         'offline'),
  ('delivering',    'sign_off',         'offline'),
  ('arriving',      'sign_off',         'offline'),
  ('available',     'timeout',          'offline'),
  ('assigned',      'timeout',          'offline'),
  ('at_restaurant', 'timeout',          'offline'),
  ('delivering',    'timeout',          'offline'),
  ('arriving',      'timeout',          'offline');
--> statement-breakpoint

INSERT INTO order_transitions (from_status, event, to_status) VALUES
  ('created',   'confirm', 'confirmed'),
  ('confirmed', 'assign',  'assigned'),
  ('assigned',  'pickup',  'picked_up'),
  ('picked_up', 'deliver', 'delivered'),
  ('created',   'cancel',  'cancelled'),
  ('confirmed', 'cancel',  'cancelled'),
  ('assigned',  'cancel',  'cancelled');
--> statement-breakpoint

CREATE FUNCTION driver_next_status(p_driver uuid, p_from driver_status, p_event text) RETURNS driver_status
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_to driver_status;
BEGIN
  SELECT to_status INTO v_to FROM driver_transitions WHERE from_status = p_from AND event = p_event;
  IF v_to IS NULL THEN
    RAISE EXCEPTION 'driver % cannot take event "%" in state %', p_driver, p_event, p_from
      USING ERRCODE = 'T1001', HINT = 'allowed moves are listed in driver_transitions';
  END IF;
  RETURN v_to;
END $$;
--> statement-breakpoint

CREATE FUNCTION order_next_status(p_order uuid, p_from order_status, p_event text) RETURNS order_status
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_to order_status;
  v_target text := CASE p_event WHEN 'confirm' THEN 'confirmed' WHEN 'assign' THEN 'assigned'
    WHEN 'pickup' THEN 'picked_up' WHEN 'deliver' THEN 'delivered' WHEN 'cancel' THEN 'cancelled' ELSE p_event END;
BEGIN
  SELECT to_status INTO v_to FROM order_transitions WHERE from_status = p_from AND event = p_event;
  IF v_to IS NULL THEN
    RAISE EXCEPTION 'order % cannot go from % to %', p_order, p_from, v_target
      USING ERRCODE = 'T1002', HINT = 'allowed moves are listed in order_transitions';
  END IF;
  RETURN v_to;
END $$;
--> statement-breakpoint

-- Applies one event to one driver under a row lock (two concurrent events serialise; the second sees the first's
-- result and may be refused). Returns the new row.
CREATE FUNCTION driver_transition(p_driver uuid, p_event text) RETURNS driver_state
LANGUAGE plpgsql AS $$
DECLARE
  v_row driver_state;
  v_from driver_status;
  v_to driver_status;
BEGIN
  SELECT * INTO v_row FROM driver_state WHERE driver_id = p_driver FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'driver % does not exist', p_driver USING ERRCODE = 'T1404';
  END IF;
  v_from := v_row.status;
  v_to := driver_next_status(p_driver, v_from, p_event);
  UPDATE driver_state
     SET status = v_to,
         status_since = now(),
         -- Back to `available` means the order is over; going offline keeps it, to resume on return.
         current_order_id = CASE WHEN v_to = 'available' THEN NULL ELSE current_order_id END,
         eta_seconds = CASE WHEN v_to = 'available' THEN NULL ELSE eta_seconds END,
         updated_at = now()
   WHERE driver_id = p_driver
  RETURNING * INTO v_row;
  INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
  VALUES ('driver', p_driver, v_from, v_to, p_event);
  RETURN v_row;
END $$;
--> statement-breakpoint

-- Applies one event to one order under a row lock, with its effect on the assigned driver (locked after the order,
-- always in that order). `assign` needs p_driver; the other events act on the order's own driver.
CREATE FUNCTION order_transition(p_order uuid, p_event text, p_driver uuid DEFAULT NULL) RETURNS orders
LANGUAGE plpgsql AS $$
DECLARE
  v_row orders;
  v_from order_status;
  v_to order_status;
BEGIN
  SELECT * INTO v_row FROM orders WHERE id = p_order FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'order % does not exist', p_order USING ERRCODE = 'T1404';
  END IF;
  v_from := v_row.status;
  v_to := order_next_status(p_order, v_from, p_event);

  IF p_event = 'assign' THEN
    IF p_driver IS NULL THEN
      RAISE EXCEPTION 'assigning order % needs a driver', p_order USING ERRCODE = 'T1422';
    END IF;
    PERFORM driver_transition(p_driver, 'assign');
    UPDATE driver_state SET current_order_id = p_order WHERE driver_id = p_driver;
  ELSIF p_event = 'pickup' THEN
    PERFORM driver_transition(v_row.driver_id, 'pickup');
  ELSIF p_event = 'deliver' THEN
    PERFORM driver_transition(v_row.driver_id, 'deliver');
  ELSIF p_event = 'cancel' AND v_row.driver_id IS NOT NULL THEN
    -- Only a driver still on this order is released (an offline one keeps its state; its order link goes).
    IF EXISTS (SELECT 1 FROM driver_state WHERE driver_id = v_row.driver_id AND current_order_id = p_order
                                            AND status IN ('assigned', 'at_restaurant')) THEN
      PERFORM driver_transition(v_row.driver_id, 'cancel');
    ELSE
      UPDATE driver_state SET current_order_id = NULL
       WHERE driver_id = v_row.driver_id AND current_order_id = p_order;
    END IF;
  END IF;

  UPDATE orders
     SET status = v_to,
         driver_id = coalesce(p_driver, driver_id),
         confirmed_at = CASE WHEN v_to = 'confirmed' THEN now() ELSE confirmed_at END,
         assigned_at  = CASE WHEN v_to = 'assigned'  THEN now() ELSE assigned_at END,
         picked_up_at = CASE WHEN v_to = 'picked_up' THEN now() ELSE picked_up_at END,
         delivered_at = CASE WHEN v_to = 'delivered' THEN now() ELSE delivered_at END,
         cancelled_at = CASE WHEN v_to = 'cancelled' THEN now() ELSE cancelled_at END,
         eta_seconds  = CASE WHEN v_to IN ('delivered', 'cancelled') THEN NULL ELSE eta_seconds END,
         updated_at = now()
   WHERE id = p_order
  RETURNING * INTO v_row;
  INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
  VALUES ('order', p_order, v_from, v_to, p_event);
  PERFORM pg_notify('order_tracking', json_build_object('order_id', p_order, 'status', v_to)::text);
  RETURN v_row;
END $$;
--> statement-breakpoint

-- Moves drivers with no position for OFFLINE_AFTER (or the settings' default) to offline; returns how many.
-- Liveness is judged on when a position reached us (received_at, server time), never on the phone's own clock:
-- a phone whose clock runs a minute slow must not flap offline and online with every batch.
CREATE FUNCTION sweep_offline_drivers(p_after interval DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  v_after interval := coalesce(p_after, make_interval(secs => (SELECT offline_after_s FROM tracking_settings WHERE id = 1)));
  v_count int;
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
    RETURNING ds.driver_id, s.from_status, ds.status
  ), logged AS (
    INSERT INTO state_history (entity, entity_id, from_status, to_status, event)
    SELECT 'driver', driver_id, from_status, status, 'timeout' FROM moved
    RETURNING 1
  )
  SELECT count(*) INTO v_count FROM logged;
  RETURN v_count;
END $$;
