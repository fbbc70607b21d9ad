/**
 * Drops a scratch or test database once the service roles' sessions have left it. `DROP … WITH (FORCE)` run by the
 * owner terminates only the owner's own sessions: a worker, API or mode publisher backend still exiting (or still
 * finishing a statement its killed process started) makes it fail with 42501. So: its scheduled upkeep is
 * unregistered (`schedule_upkeep(name, '[]')`, which also ends the jobs' runs still going: a compaction tick or the
 * sweep loop runs for up to a minute, longer on a busy box), no new service sessions, wait (up to `timeoutMs`) for the
 * ones there to end, then drop (again, while one is still on its way out).
 */
import type postgres from "postgres";

export const SERVICE_ROLES = ["tracking_api", "tracking_worker", "tracking_modes", "tracking_upkeep"] as const;

export async function dropDatabaseWhenServicesLeft(admin: postgres.Sql, name: string, timeoutMs = 60_000): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`database name ${name}: lower-case letters, digits and _`);
  const [exists] = await admin<{ n: number }[]>`select count(*)::int as n from pg_database where datname = ${name}`;
  if (exists!.n === 0) return;
  await admin`select count(*) from schedule_upkeep(${name}, '[]'::jsonb)`;
  await admin.unsafe(`revoke connect on database ${name} from ${SERVICE_ROLES.join(", ")}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await admin<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where datname = ${name} and usename <> current_user`;
    if (row!.n === 0 || Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // A backend that is exiting has already left pg_stat_activity but not yet the process array FORCE reads: 42501
  // then means "a moment later", so the drop is tried again until the deadline.
  for (;;) {
    try {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== "42501" || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
