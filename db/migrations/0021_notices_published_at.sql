-- Issue #15: each order notice says when the database published it. notify_order_tracking (0012) adds
-- "published_at" to every payload it sends: the database's clock read once per call, as the apply procedure's (or the
-- sweep's) statement ends, so never later than the commit that delivers the notices. A live-tracking client sees it in
-- each position event (the API passes the notice through), and bench:fanout measures the API's part from it: publish →
-- client's receipt, which counts the rest of the batch's transaction against the API, never in its favour.
-- Payloads that are not a JSON object with fields ('{…}') are sent as they are. Skipping under pressure is unchanged.
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
                    CASE WHEN p LIKE '{%}' AND p <> '{}' THEN left(p, -1) || v_stamp ELSE p END)
  FROM unnest(p_payloads) p;
  RETURN cardinality(p_payloads);
END $$;
