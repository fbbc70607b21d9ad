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
FROM unnest(ARRAY['tracking_owner', 'tracking_api', 'tracking_worker', 'tracking_modes', 'tracking_upkeep']) AS r
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
-- The scheduled upkeep (migration 0024: the offline sweep, trail partitions, trail compaction) runs inside the server
-- on pg_cron's connections, as this role. It has no password: over TCP every connection is SCRAM, so nobody can log
-- in as it; over the local socket pg_hba lets only the server's own OS user in as it (peer, map "upkeep"). A compaction tick runs ~50 s and
-- then one step, which after an outage may take minutes: 15 minutes stops only a runaway one.
ALTER ROLE tracking_upkeep WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD NULL;
ALTER ROLE tracking_upkeep SET statement_timeout = '15min';
ALTER ROLE tracking_upkeep SET lock_timeout = '20s';
ALTER ROLE tracking_upkeep SET idle_in_transaction_session_timeout = '60s';
-- The mode publisher reads a page of 1,000 drivers or records one batch: milliseconds. Its LISTEN session idles.
ALTER ROLE tracking_modes SET statement_timeout = '10s';
ALTER ROLE tracking_modes SET lock_timeout = '5s';
ALTER ROLE tracking_modes SET idle_in_transaction_session_timeout = '30s';

\connect template1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;

-- The scheduler (pg_cron, loaded by infra/postgres/postgresql.conf) lives in the `postgres` database. Its jobs run in
-- the project's databases as tracking_upkeep. The owner registers a database's jobs through schedule_upkeep (it may
-- not call pg_cron's own functions): only for a database it owns, only as tracking_upkeep, and the jobs of databases
-- that no longer exist are dropped on the way. upkeep_runs shows the owner those jobs' recent runs.
\connect postgres
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;

CREATE OR REPLACE FUNCTION public.schedule_upkeep(p_database name, p_jobs jsonb)
RETURNS TABLE (job text, schedule text, command text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_database WHERE datname = p_database AND datdba = 'tracking_owner'::regrole) THEN
    RAISE EXCEPTION 'database % does not exist or is not the owner''s', p_database USING ERRCODE = '42501';
  END IF;
  IF jsonb_typeof(p_jobs) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'jobs must be an array of {name, schedule, command}' USING ERRCODE = '22023';
  END IF;
  PERFORM cron.unschedule(j.jobid)
  FROM cron.job j
  WHERE j.username = 'tracking_upkeep'
    AND (j.database NOT IN (SELECT datname FROM pg_database)
         OR (j.database = p_database
             AND j.jobname NOT IN (SELECT p_database || ':' || (e->>'name') FROM jsonb_array_elements(p_jobs) e)));
  PERFORM cron.schedule_in_database(p_database || ':' || (e->>'name'), e->>'schedule', e->>'command', p_database,
                                    'tracking_upkeep')
  FROM jsonb_array_elements(p_jobs) e;
  -- pg_cron connects to each job's nodename, which it stamps once, when the job is first made: the local socket now
  -- (cron.host), also for a job made before it was set.
  UPDATE cron.job j SET nodename = current_setting('cron.host')
  WHERE j.username = 'tracking_upkeep' AND j.database = p_database AND j.nodename IS DISTINCT FROM current_setting('cron.host');
  -- An empty list unregisters the database, before it is dropped: its runs still going end now. The owner's
  -- DROP DATABASE ... WITH (FORCE) may not end another role's sessions, and a compaction tick or a sweep loop runs
  -- for up to a minute (longer on a busy box: a bench's drop once failed on one, 42501).
  IF jsonb_array_length(p_jobs) = 0 THEN
    PERFORM pg_terminate_backend(a.pid)
    FROM pg_stat_activity a
    WHERE a.datname = p_database AND a.usename = 'tracking_upkeep';
  END IF;
  RETURN QUERY SELECT j.jobname::text, j.schedule, j.command FROM cron.job j
    WHERE j.username = 'tracking_upkeep' AND j.database = p_database ORDER BY j.jobname;
END $$;
REVOKE ALL ON FUNCTION public.schedule_upkeep(name, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.schedule_upkeep(name, jsonb) TO tracking_owner;

CREATE OR REPLACE FUNCTION public.upkeep_runs(p_database name, p_since timestamptz)
RETURNS TABLE (job text, username text, status text, started_at timestamptz, ended_at timestamptz, message text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT j.jobname::text, d.username::text, d.status, d.start_time, d.end_time, d.return_message
  FROM cron.job_run_details d JOIN cron.job j USING (jobid)
  WHERE j.database = p_database AND j.username = 'tracking_upkeep' AND d.start_time >= p_since
  ORDER BY d.start_time
$$;
REVOKE ALL ON FUNCTION public.upkeep_runs(name, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.upkeep_runs(name, timestamptz) TO tracking_owner;

-- pg_cron keeps a row per run; a week of them is enough to look back on.
SELECT cron.schedule('cron_history', '17 3 * * *',
                     $$DELETE FROM cron.job_run_details WHERE end_time < now() - interval '7 days'$$) \gset
UPDATE cron.job SET nodename = current_setting('cron.host')
WHERE jobname = 'cron_history' AND username = 'postgres' AND nodename IS DISTINCT FROM current_setting('cron.host');
