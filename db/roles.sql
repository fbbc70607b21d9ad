-- Cluster-level identity of the services, run by bin/stack as the superuser on every `up` (idempotent), before the
-- migrations: roles and their passwords (a password changed in .stack/secrets.env is applied here: that is the
-- rotation path), per-role time limits, and PostGIS in template1 (not a trusted extension, so the owner cannot
-- create it; every database made from template1 has it). Grants on the schema's objects live in migration 0009.
-- Passwords come from the environment (\getenv), never from the command line, where `ps` would show them.
\set ON_ERROR_STOP on
\getenv owner_password PG_OWNER_PASSWORD
\getenv api_password PG_API_PASSWORD
\getenv worker_password PG_WORKER_PASSWORD
\getenv modes_password PG_MODES_PASSWORD

SELECT format('CREATE ROLE %I', r)
FROM unnest(ARRAY['tracking_owner', 'tracking_api', 'tracking_worker', 'tracking_modes']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)
\gexec

-- The owner: every object and all DDL; CREATEDB for the tests' template and fresh databases. No role management.
ALTER ROLE tracking_owner WITH LOGIN NOSUPERUSER NOCREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS
  PASSWORD :'owner_password';
ALTER ROLE tracking_api WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  PASSWORD :'api_password';
ALTER ROLE tracking_worker WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  PASSWORD :'worker_password';
-- The mode publisher (workers/mode-publisher.ts). Without its secret (a stack made before it) it cannot log in.
\if :{?modes_password}
ALTER ROLE tracking_modes WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
  PASSWORD :'modes_password';
\else
ALTER ROLE tracking_modes WITH NOLOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;
\endif

-- The API answers customers: a statement running 5 s is a bug or an attack, never an answer worth waiting for.
-- Its transitions wait on the worker's row locks for a few milliseconds at most, so 2 s of waiting is a stuck lock.
ALTER ROLE tracking_api SET statement_timeout = '5s';
ALTER ROLE tracking_api SET lock_timeout = '2s';
ALTER ROLE tracking_api SET idle_in_transaction_session_timeout = '30s';
-- The worker's COPY + apply of a 40,000-position batch takes ~0.4 s; 60 s only stops a runaway statement. Its lock
-- waits are short (a transition holding a driver's row); 20 s bounds a stuck one, and the worker retries the batch.
ALTER ROLE tracking_worker SET statement_timeout = '60s';
ALTER ROLE tracking_worker SET lock_timeout = '20s';
ALTER ROLE tracking_worker SET idle_in_transaction_session_timeout = '60s';
-- A service process that died mid-statement (a worker killed during a 10-minute compaction step) leaves its backend
-- running the statement to the end, holding its locks, and a database with such a backend cannot be dropped by its
-- owner. Each service's backend checks every 2 s that its client is still there and stops if not.
ALTER ROLE tracking_api SET client_connection_check_interval = '2s';
ALTER ROLE tracking_worker SET client_connection_check_interval = '2s';
ALTER ROLE tracking_modes SET client_connection_check_interval = '2s';
-- The mode publisher reads a page of 1,000 drivers or records one batch: milliseconds. Its LISTEN session idles.
ALTER ROLE tracking_modes SET statement_timeout = '10s';
ALTER ROLE tracking_modes SET lock_timeout = '5s';
ALTER ROLE tracking_modes SET idle_in_transaction_session_timeout = '30s';

\connect template1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;
