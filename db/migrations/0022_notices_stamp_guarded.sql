-- 0021's stamping, made safe for any payload a caller may pass: only a JSON object with at least one field is stamped
-- (whitespace around it allowed: 0021 sent '{"a":1} ' unstamped and turned '{ }' into invalid JSON), and only while
-- the stamped payload stays under NOTIFY's 8000 bytes (over it pg_notify raises, which would fail the whole batch's
-- transaction); anything else is sent as it is. Skipping under pressure is unchanged.
CREATE OR REPLACE FUNCTION notify_order_tracking(p_payloads text[]) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_limit double precision := coalesce(nullif(current_setting('tracking.notify_queue_limit', true), '')::double precision,
                                       0.5);
  v_stamp text;
BEGIN
  IF coalesce(cardinality(p_payloads), 0) = 0 THEN
    RETURN 0;
  END IF;
  IF pg_notification_queue_usage() >= v_limit THEN
    PERFORM nextval('order_tracking_notices_skipped') FROM generate_series(1, cardinality(p_payloads));
    RETURN 0;
  END IF;
  v_stamp := ',"published_at":' || to_json(clock_timestamp())::text || '}';
  -- One statement, not a loop of PERFORMs (each a query of its own: measurably slower for thousands of notices).
  PERFORM pg_notify('order_tracking',
                    CASE WHEN p ~ '^\s*\{\s*"' AND p ~ '\}\s*$' AND octet_length(p) + octet_length(v_stamp) < 8000
                         THEN regexp_replace(p, '\}\s*$', v_stamp)
                         ELSE p END)
  FROM unnest(p_payloads) p;
  RETURN cardinality(p_payloads);
END $$;
