-- The worker's partition upkeep without an argument it could abuse. 0009 granted it drop_old_trail_partitions(keep_days),
-- which runs as the owner: `drop_old_trail_partitions(-1)` would have dropped every partition of the trail, today's
-- too. trail_upkeep() does exactly what the worker's schedule does, with the retention from tracking_settings.
-- (ensure_trail_partitions stays granted: apply_position_batch calls it for each batch's time range.)
CREATE FUNCTION trail_upkeep() RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT ensure_trail_partitions(now(), now() + interval '1 day') + drop_old_trail_partitions();
$$;--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION trail_upkeep() FROM PUBLIC;--> statement-breakpoint
GRANT EXECUTE ON FUNCTION trail_upkeep() TO tracking_worker;--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION drop_old_trail_partitions(int) FROM tracking_worker;
