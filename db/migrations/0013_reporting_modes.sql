-- Reporting modes chosen by the server (issue #11). A driver's state decides how its phone reports:
--   live  while a customer watches (assigned, at_restaurant, delivering, arriving): every fix at once (4 s);
--   idle  while available: fixes batched, sent on significant movement or every 30 s;
--   off   while offline: nothing.
-- The mode of each state is a row (driver_reporting_modes), as the machine's moves are rows (0003), so it is decided
-- once, here; reporting_mode(state) reads it.
--
-- When a driver's MODE changes (not on every state change: assigned -> at_restaurant stays live; not on positions), a
-- notice {driver_id, mode, state, at} goes out on `driver_mode`, from a trigger on driver_state.status, so every path
-- that moves a driver says so without repeating itself: driver_transition (order events, sign-off), the apply
-- procedure (coming online, resuming an order's leg), the offline sweep, and a row inserted already online. The
-- trigger is a row trigger whose WHEN (status changed) is tested in the executor before anything is queued: the
-- apply procedure's UPDATE sets `status` on every moved driver, and a driver whose status stayed costs one
-- comparison. Only status changes run the function (rare next to positions: per order a handful; all drivers at
-- once only when a fleet comes online or the sweep takes a silent fleet offline).
--
-- The notices follow 0012's rule, so ingest never fails because the mode listener is slow: a notice is sent only
-- while pg_notification_queue_usage() is under tracking.notify_queue_limit (0.5 unless set), otherwise skipped and
-- counted in driver_mode_notices_skipped. The publisher (workers/mode-publisher.ts) watches that count
-- (driver_mode_notice_status()) and, when it grew, reconciles: it compares every driver's mode with the mode it
-- last published (driver_mode_published, written by the publisher through record_driver_modes_published) and
-- publishes the differences, page by page (driver_modes_to_publish). It does the same at start and after its
-- LISTEN connection came back, since notices sent while it was away are lost.
--
-- Not in db/schema.ts (as 0012's sequence): these objects are the publisher's, made and changed by custom migrations.

CREATE TABLE driver_reporting_modes (
  status driver_status PRIMARY KEY,
  mode text NOT NULL CHECK (mode IN ('live', 'idle', 'off'))
);
--> statement-breakpoint

INSERT INTO driver_reporting_modes (status, mode) VALUES
  ('offline',       'off'),
  ('available',     'idle'),
  ('assigned',      'live'),
  ('at_restaurant', 'live'),
  ('delivering',    'live'),
  ('arriving',      'live');
--> statement-breakpoint

-- The mode of a state; NULL for a state without a row (test/db/reporting-modes.test.ts covers every state).
CREATE FUNCTION reporting_mode(p_status driver_status) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = public, pg_temp AS $$
  SELECT mode FROM driver_reporting_modes WHERE status = p_status
$$;
--> statement-breakpoint

-- What the publisher last published, retained, on each driver's command topic. No row = nothing published, which
-- a phone reads as `off` (so a driver who never came online needs no message).
CREATE TABLE driver_mode_published (
  driver_id uuid PRIMARY KEY REFERENCES drivers (id) ON DELETE CASCADE,
  mode text NOT NULL CHECK (mode IN ('live', 'idle', 'off')),
  status driver_status NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now()
);
--> statement-breakpoint

CREATE SEQUENCE driver_mode_notices_skipped;
--> statement-breakpoint

-- The trigger's body: one notice per driver whose mode changed, under 0012's queue limit. Runs as the owner (the
-- worker and the API, whose statements fire it, may not touch the sequence).
CREATE FUNCTION notify_driver_mode() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_limit double precision;
  v_mode text;
  v_old_mode text;
BEGIN
  -- Both modes in one look-up (OLD is NULL on INSERT): this runs once per status change, a whole fleet's at start.
  SELECT max(m.mode) FILTER (WHERE m.status = NEW.status), max(m.mode) FILTER (WHERE m.status = OLD.status)
    INTO v_mode, v_old_mode
  FROM driver_reporting_modes m WHERE m.status IN (NEW.status, OLD.status);
  IF TG_OP = 'UPDATE' AND v_old_mode IS NOT DISTINCT FROM v_mode THEN
    RETURN NULL;
  END IF;
  v_limit := coalesce(nullif(current_setting('tracking.notify_queue_limit', true), '')::double precision, 0.5);
  IF pg_notification_queue_usage() >= v_limit THEN
    PERFORM nextval('driver_mode_notices_skipped');
    RETURN NULL;
  END IF;
  PERFORM pg_notify('driver_mode', json_build_object(
    'driver_id', NEW.driver_id, 'mode', v_mode, 'state', NEW.status, 'at', NEW.status_since)::text);
  RETURN NULL;
END $$;
--> statement-breakpoint

CREATE TRIGGER driver_mode_changed
  AFTER UPDATE OF status ON driver_state
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION notify_driver_mode();
--> statement-breakpoint

CREATE TRIGGER driver_mode_inserted
  AFTER INSERT ON driver_state
  FOR EACH ROW WHEN (NEW.status <> 'offline')
  EXECUTE FUNCTION notify_driver_mode();
--> statement-breakpoint

-- The notices skipped since the database was created, and the queue's fill (0..1).
CREATE FUNCTION driver_mode_notice_status(OUT usage double precision, OUT skipped bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT pg_notification_queue_usage(), CASE WHEN s.is_called THEN s.last_value ELSE 0 END
  FROM driver_mode_notices_skipped s
$$;
--> statement-breakpoint

-- One page of the reconciliation: drivers after p_after (by id) whose mode is not the one last published (no row
-- counts as `off`), at most p_limit, in id order. The caller passes the last id it got as the next p_after; a page
-- shorter than p_limit is the last. One index scan of driver_state in id order across all pages, with a primary-key
-- probe of driver_mode_published per driver: 100,000 drivers read in well under a second in total.
CREATE FUNCTION driver_modes_to_publish(p_after uuid, p_limit int)
RETURNS TABLE (driver_id uuid, mode text, state driver_status, at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT ds.driver_id, m.mode, ds.status, ds.status_since
  FROM driver_state ds
  JOIN driver_reporting_modes m ON m.status = ds.status
  LEFT JOIN driver_mode_published p ON p.driver_id = ds.driver_id
  WHERE ds.driver_id > coalesce(p_after, '00000000-0000-0000-0000-000000000000'::uuid)
    AND coalesce(p.mode, 'off') <> m.mode
  ORDER BY ds.driver_id
  LIMIT greatest(p_limit, 1)
$$;
--> statement-breakpoint

-- Records what the publisher published (the broker acknowledged it): one upsert for a batch of drivers. Returns
-- how many rows it wrote. A driver deleted meanwhile is skipped.
CREATE FUNCTION record_driver_modes_published(p_drivers uuid[], p_modes text[], p_states driver_status[])
RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  WITH written AS (
    INSERT INTO driver_mode_published AS p (driver_id, mode, status, published_at)
    SELECT x.driver_id, x.mode, x.status, now()
    FROM unnest(p_drivers, p_modes, p_states) AS x (driver_id, mode, status)
    WHERE EXISTS (SELECT FROM drivers d WHERE d.id = x.driver_id)
    ON CONFLICT (driver_id) DO UPDATE SET mode = excluded.mode, status = excluded.status, published_at = now()
    RETURNING 1
  )
  SELECT count(*)::int FROM written
$$;
--> statement-breakpoint

-- The publisher's role (db/roles.sql makes it): connects, and calls exactly these. LISTEN needs no grant.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tracking_modes') THEN
    RAISE EXCEPTION 'role tracking_modes does not exist'
      USING HINT = 'bin/stack up creates the service roles (db/roles.sql) before migrating';
  END IF;
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO tracking_modes', current_database());
END $$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO tracking_modes;
--> statement-breakpoint
REVOKE ALL ON FUNCTION reporting_mode(driver_status), notify_driver_mode(), driver_mode_notice_status(),
  driver_modes_to_publish(uuid, int), record_driver_modes_published(uuid[], text[], driver_status[]) FROM PUBLIC;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION driver_mode_notice_status(), driver_modes_to_publish(uuid, int),
  record_driver_modes_published(uuid[], text[], driver_status[]) TO tracking_modes;
