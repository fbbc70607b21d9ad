-- A realistic day of the trail in bulk, for :drivers new drivers: a fix every 4 s from :day 00:00 UTC, each driver
-- alternating between riding (speed drifting 10-45 km/h, heading turning slowly) and waiting (speed 0), with GPS
-- noise (sd ~3 m) on every fix, accuracy 3-20 m, received 60-700 ms after recording, a few gaps (phone offline), and
-- an H3-like cell id that changes every ~170 m (the database has no H3 extension: this mimics res-9 cells' run lengths).
WITH new_drivers AS (
  INSERT INTO drivers (id, name)
  SELECT gen_random_uuid(), 'trail bench driver ' || k FROM generate_series(1, :drivers) k
  RETURNING id
), d AS (
  SELECT id, row_number() OVER (ORDER BY id) AS k, 40.70 + random() * 0.1 AS lat0, -74.00 + random() * 0.1 AS lon0
  FROM new_drivers
), motion AS (
  SELECT d.id, d.k, d.lat0, d.lon0, s.i,
         CASE WHEN sin(s.i / 180.0 + d.k) > -0.2 THEN greatest(0, 27 + 12 * sin(s.i / 97.0 + d.k * 3) + 3 * random()) ELSE 0 END
           AS speed_kmh,
         (d.k * 37 + 140 * sin(s.i / 230.0 + d.k * 1.3) + 6 * random())::numeric % 360 AS heading_deg
  FROM d, generate_series(0, 21599) s(i)
), walked AS (
  SELECT m.*,
         sum(m.speed_kmh / 3.6 * 4 * cos(radians(m.heading_deg))) OVER w / 111320.0 AS north_deg,
         sum(m.speed_kmh / 3.6 * 4 * sin(radians(m.heading_deg))) OVER w / 84400.0 AS east_deg
  FROM motion m
  WINDOW w AS (PARTITION BY m.id ORDER BY m.i)
), fixes AS (
  SELECT w.id, (:day)::timestamptz + w.i * interval '4 seconds' + (random() * 40)::int * interval '1 millisecond' AS at,
         -- a wave that never leaves the city: the walk folds back every ~6 km
         w.lat0 + 0.05 * sin(w.north_deg / 0.05) + (random() + random() + random() - 1.5) * 0.00004 AS lat,
         w.lon0 + 0.05 * sin(w.east_deg / 0.05) + (random() + random() + random() - 1.5) * 0.00005 AS lon,
         w.speed_kmh, w.heading_deg, w.i
  FROM walked w
)
INSERT INTO position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
SELECT f.id, f.at, round(f.lat::numeric, 7)::float8, round(f.lon::numeric, 7)::float8,
       613196571557000000 + floor(f.lat / 0.0015)::bigint * 100000 + floor(f.lon / 0.0015)::bigint,
       round(f.speed_kmh::numeric, 2)::real, round(f.heading_deg, 1)::real, round((3 + random() * 17)::numeric, 1)::real,
       f.at + (60 + random() * 640)::int * interval '1 millisecond'
FROM fixes f
-- ~1% of fixes lost, and a 10-minute gap in each driver's 6th hour (the phone offline)
WHERE random() > 0.01 AND NOT (f.i BETWEEN 5 * 900 AND 5 * 900 + 150);
