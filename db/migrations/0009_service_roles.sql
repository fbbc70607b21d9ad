-- Least privilege: each service's PostgreSQL role gets exactly what its code calls, nothing by default.
--   tracking_owner   owns every object, the only role with DDL; runs the migrations, the tests, the generator.
--   tracking_worker  workers/positions.ts + workers/apply-batch.ts: COPY into its session's staging table, the apply
--                    procedure, the offline sweep, partition upkeep, OFFLINE_AFTER into tracking_settings.
--   tracking_api     api/: reads orders, drivers, driver_state, restaurants; inserts orders; moves orders only
--                    through order_transition and assign_nearest_driver. LISTEN needs no grant.
-- The roles themselves (cluster objects, with passwords and time limits) are made by bin/stack from db/roles.sql
-- before migrating; a database migrated without them stops here, naming the missing role.

DO $$
DECLARE
  v_role text;
BEGIN
  FOREACH v_role IN ARRAY ARRAY['tracking_owner', 'tracking_api', 'tracking_worker'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = v_role) THEN
      RAISE EXCEPTION 'role % does not exist', v_role
        USING HINT = 'bin/stack up creates the service roles (db/roles.sql) before migrating';
    END IF;
  END LOOP;
END $$;
--> statement-breakpoint

-- Deny by default. PostgreSQL lets PUBLIC (every role) connect, make temp tables, and execute every new function.
DO $$
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO tracking_api, tracking_worker', current_database());
  -- open_position_staging makes a session-private temp table that shadows position_staging.
  EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO tracking_worker', current_database());
END $$;
--> statement-breakpoint
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO tracking_api, tracking_worker;
--> statement-breakpoint
-- Every function of ours (PostGIS's stay as PostGIS made them): no EXECUTE for PUBLIC, whatever migration made it.
DO $$
DECLARE
  v_fn regprocedure;
BEGIN
  FOR v_fn IN
    SELECT p.oid::regprocedure
    FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace
      AND NOT EXISTS (SELECT FROM pg_depend d
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_fn);
  END LOOP;
END $$;
--> statement-breakpoint
-- Whatever later migrations create is closed too, until a migration grants it by name.
ALTER DEFAULT PRIVILEGES FOR ROLE tracking_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
--> statement-breakpoint

-- Functions that write what their caller may not touch directly run as the owner, with a fixed search_path so a
-- caller's own objects cannot stand in for ours (pg_temp last: never searched first for relations).
-- The API moves orders and drivers only through the state machines:
ALTER FUNCTION order_transition(uuid, text, uuid) SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION assign_nearest_driver(uuid, bigint[], real) SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
-- Partition upkeep is DDL (CREATE TABLE … PARTITION OF, DROP TABLE), which only the owner may do; the worker calls
-- it hourly, so these run as the owner. The partitions they make belong to the owner.
ALTER FUNCTION ensure_trail_partitions(timestamptz, timestamptz) SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION drop_old_trail_partitions(int) SECURITY DEFINER SET search_path = public, pg_temp;
--> statement-breakpoint
-- apply_position_batch, sweep_offline_drivers and open_position_staging stay SECURITY INVOKER: the staging table is
-- the worker session's own temp table (owned by tracking_worker), which a function running as the owner could not
-- read; so the worker holds the few table rights the apply needs, below.

-- The position worker.
GRANT EXECUTE ON FUNCTION open_position_staging(), apply_position_batch(), sweep_offline_drivers(interval),
  ensure_trail_partitions(timestamptz, timestamptz), drop_old_trail_partitions(int) TO tracking_worker;
--> statement-breakpoint
-- The apply's speed check (0008), every overload by name: SQL functions are inlined only when the caller may
-- execute them, and the apply calls them as the worker.
DO $$
DECLARE
  v_name text;
  v_fn regprocedure;
BEGIN
  FOREACH v_name IN ARRAY ARRAY['position_hop_m', 'position_hop_impossible'] LOOP
    IF NOT EXISTS (SELECT FROM pg_proc WHERE proname = v_name AND pronamespace = 'public'::regnamespace) THEN
      RAISE EXCEPTION 'function % (migration 0008) does not exist: grant what apply_position_batch calls now', v_name;
    END IF;
    FOR v_fn IN SELECT oid::regprocedure FROM pg_proc WHERE proname = v_name AND pronamespace = 'public'::regnamespace
    LOOP
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO tracking_worker', v_fn);
    END LOOP;
  END LOOP;
END $$;
--> statement-breakpoint
-- CREATE TEMP TABLE … (LIKE public.position_staging) reads the shape of the shared table (which stays empty).
GRANT SELECT ON position_staging TO tracking_worker;
--> statement-breakpoint
GRANT SELECT, UPDATE ON driver_state TO tracking_worker;
--> statement-breakpoint
-- Inserts through the partitioned parent: privileges are checked on the parent only, so new partitions need none.
GRANT SELECT, INSERT ON position_trail TO tracking_worker;
--> statement-breakpoint
GRANT INSERT ON state_history TO tracking_worker;
--> statement-breakpoint
-- The geofences and ETAs read the live order and its restaurant; the machines' allowed moves; the settings row.
GRANT SELECT ON orders, restaurants, driver_transitions, tracking_settings TO tracking_worker;
--> statement-breakpoint
-- OFFLINE_AFTER is written at start-up so the sweep and assignment agree (workers/positions.ts).
GRANT UPDATE (offline_after_s) ON tracking_settings TO tracking_worker;
--> statement-breakpoint

-- The API.
GRANT EXECUTE ON FUNCTION order_transition(uuid, text, uuid), assign_nearest_driver(uuid, bigint[], real)
  TO tracking_api;
--> statement-breakpoint
GRANT SELECT ON orders, drivers, driver_state, restaurants TO tracking_api;
--> statement-breakpoint
-- A new order names its customer, restaurant, address and items; its status, driver and times are the machine's.
GRANT INSERT (customer_id, restaurant_id, delivery_location, items) ON orders TO tracking_api;
