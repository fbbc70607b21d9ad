/**
 * Database URLs for the service roles (db/roles.sql), built from the development stack's secrets (.stack/secrets.env,
 * loaded by lib/stack-env.ts): tests and benchmarks run code with exactly a service's rights.
 */

/** The service roles (db/roles.sql) and the secrets holding their passwords (.stack/secrets.env). */
export const SERVICE_ROLES = {
  tracking_api: "PG_API_PASSWORD",
  tracking_worker: "PG_WORKER_PASSWORD",
  tracking_modes: "PG_MODES_PASSWORD",
} as const;
export type ServiceRole = keyof typeof SERVICE_ROLES;

/** The same database as `url`, logged in as a service role, to run code with exactly that service's rights. */
export function serviceUrl(url: string, role: ServiceRole): string {
  const password = process.env[SERVICE_ROLES[role]];
  if (!password) throw new Error(`${SERVICE_ROLES[role]} is not set: run bin/stack up (it writes .stack/secrets.env)`);
  const u = new URL(url);
  u.username = role;
  u.password = password;
  return u.toString();
}
