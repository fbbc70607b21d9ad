-- PostGIS first: the tables use geography(Point, 4326).
CREATE EXTENSION IF NOT EXISTS postgis;
