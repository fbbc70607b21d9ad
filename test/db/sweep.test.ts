// The offline sweep on real PostgreSQL: who goes offline, what is logged, and which orders hear of it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { waitFor } from "../api/support/wait.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await freshDatabase("sweep");
});
afterAll(() => db?.drop());

// Each driver: its state, how long ago its last position reached us (null: never), and whether it carries an
// order (in that order status) — then what the sweep with OFFLINE_AFTER = 60 s must leave.
const CASES = [
  { name: "silent available", status: "available", receivedAgo: 120, order: null, after: "offline", notified: false },
  { name: "recent available", status: "available", receivedAgo: 10, order: null, after: "available", notified: false },
  { name: "silent on an order", status: "assigned", receivedAgo: 300, order: "assigned", after: "offline", notified: true },
  { name: "silent delivering", status: "delivering", receivedAgo: 90, order: "picked_up", after: "offline", notified: true },
  { name: "recent delivering", status: "delivering", receivedAgo: 5, order: "picked_up", after: "delivering", notified: false },
  { name: "already offline", status: "offline", receivedAgo: 999, order: null, after: "offline", notified: false },
] as const;

test("drivers silent for longer than OFFLINE_AFTER go offline, are logged, and their live orders are told", async () => {
  const [customer] = await db.sql<{ id: string }[]>`
    insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.99 40.73)') returning id`;
  const [restaurant] = await db.sql<{ id: string }[]>`
    insert into restaurants (name, location, h3) values ('r', 'SRID=4326;POINT(-73.98 40.75)', 1) returning id`;
  const ids: Record<string, { driver: string; order: string | null }> = {};
  for (const c of CASES) {
    const [driver] = await db.sql<{ id: string }[]>`insert into drivers (name) values (${c.name}) returning id`;
    let order: string | null = null;
    if (c.order) {
      const [created] = await db.sql<{ id: string }[]>`
        insert into orders (customer_id, restaurant_id, delivery_location, status, driver_id)
        values (${customer!.id}, ${restaurant!.id}, 'SRID=4326;POINT(-73.99 40.73)', ${c.order}, ${driver!.id})
        returning id`;
      order = created!.id;
    }
    await db.sql`
      insert into driver_state (driver_id, status, current_order_id, received_at, position_at, status_since)
      values (${driver!.id}, ${c.status}, ${order}, now() - make_interval(secs => ${c.receivedAgo}),
              now() - make_interval(secs => ${c.receivedAgo}), now() - interval '1 hour')`;
    ids[c.name] = { driver: driver!.id, order };
  }

  const notices: { order_id: string | null; status: string; driver_id: string; driver_state: string; published_at?: string }[] = [];
  const listener = await db.sql.listen("order_tracking", (payload) => notices.push(JSON.parse(payload)));
  const [{ swept }] = (await db.sql`select sweep_offline_drivers(interval '60 seconds') as swept`) as unknown as [
    { swept: number },
  ];
  expect(swept).toBe(3);

  for (const c of CASES) {
    const [row] = await db.sql<{ status: string }[]>`
      select status::text from driver_state where driver_id = ${ids[c.name]!.driver}`;
    expect({ name: c.name, status: row!.status }).toEqual({ name: c.name, status: c.after });
    const logged = await db.sql`
      select 1 from state_history where entity_id = ${ids[c.name]!.driver} and event = 'timeout'`;
    expect({ name: c.name, logged: logged.length }).toEqual({
      name: c.name,
      logged: c.after === "offline" && c.status !== "offline" ? 1 : 0,
    });
  }
  const expected = CASES.filter((c) => c.notified).map((c) => ({
    order_id: ids[c.name]!.order, status: c.order, driver_id: ids[c.name]!.driver, driver_state: "offline",
  }));
  // Notices are delivered after the commit, asynchronously, on the listening connection.
  const deadline = Date.now() + 5_000;
  while (notices.length < expected.length && Date.now() < deadline) await Bun.sleep(10);
  // Each notice says when the database published it (0021); the rest is the sweep's.
  for (const n of notices) expect(Number.isFinite(Date.parse(String(n.published_at)))).toBe(true);
  const withoutStamp = notices.map(({ published_at: _, ...rest }) => rest);
  expect(withoutStamp.sort((a, b) => String(a.order_id).localeCompare(String(b.order_id)))).toEqual(
    expected.sort((a, b) => String(a.order_id).localeCompare(String(b.order_id))),
  );
  await listener.unlisten();
});

// Silence is judged against the newest position received from anyone (0016), never later than now(), and never
// more than an hour before it. Each row: how long ago each driver's last position reached us, and who goes offline.
const STREAM_TIME_CASES = [
  {
    name: "the pipeline is 10 minutes behind (draining after an outage): only the driver silent 80 s before the newest fix",
    receivedAgo: [600, 610, 655, 680],
    offline: [false, false, false, true],
  },
  {
    name: "the pipeline is current: the wall clock, as before",
    receivedAgo: [0, 30, 55, 65, 600],
    offline: [false, false, false, true, true],
  },
  {
    name: "the whole fleet silent for two hours: after an hour the wall clock rules again",
    receivedAgo: [7_200, 7_210],
    offline: [true, true],
  },
] as const;

for (const c of STREAM_TIME_CASES) {
  test(`silence on the stream's time: ${c.name}`, async () => {
    await db.sql`update driver_state set current_order_id = null`;
    await db.sql`delete from orders`;
    await db.sql`delete from drivers`;
    const drivers = await db.sql<{ id: string }[]>`
      insert into drivers (name) select 'd' || g from generate_series(1, ${c.receivedAgo.length}) g returning id`;
    await db.sql`
      insert into driver_state (driver_id, status, received_at, position_at, status_since)
      select d, 'available', now() - make_interval(secs => ago), now() - make_interval(secs => ago), now() - interval '3 hours'
      from unnest(${drivers.map((d) => d.id)}::uuid[], ${[...c.receivedAgo]}::float8[]) as x(d, ago)`;
    await db.sql`select sweep_offline_drivers(interval '60 seconds')`;
    const rows = await db.sql<{ id: string; status: string }[]>`
      select driver_id as id, status::text from driver_state where driver_id = any (${drivers.map((d) => d.id)}::uuid[])`;
    const status = new Map(rows.map((r) => [r.id, r.status]));
    expect(drivers.map((d) => status.get(d.id) === "offline")).toEqual([...c.offline]);
  });
}

// The scheduled job (0024): sweep_offline_drivers_for sweeps every p_every for p_for, one transaction per sweep, so
// a driver that falls silent while it runs goes offline at one of its next sweeps, not at the next job.
test("the job's loop sweeps again and again: a driver that falls silent mid-loop goes offline within it", async () => {
  const newDriver = async (name: string, receivedAt: string) => {
    const [d] = await db.sql<{ id: string }[]>`insert into drivers (name) values (${name}) returning id`;
    await db.sql`
      insert into driver_state (driver_id, status, received_at, position_at, status_since)
      values (${d!.id}, 'available', ${receivedAt}::timestamptz, ${receivedAt}::timestamptz, now() - interval '1 hour')`;
    return d!.id;
  };
  const statusOf = async (id: string) =>
    (await db.sql<{ status: string }[]>`select status::text from driver_state where driver_id = ${id}`)[0]!.status;
  // Silence is judged against the newest position heard, never later than now() (0016): one driver dated ahead
  // keeps that at now() while the loop runs.
  await newDriver("ahead", new Date(Date.now() + 3_600_000).toISOString());
  const canary = await newDriver("silent from the start", new Date(Date.now() - 120_000).toISOString());
  const target = await newDriver("falls silent", new Date().toISOString());
  const loop = db.sql`call sweep_offline_drivers_for(interval '10 seconds', interval '1 second')`.execute(); // starts now
  await waitFor("the loop's first sweep", async () => (await statusOf(canary)) === "offline");
  expect(await statusOf(target)).toBe("available");
  await db.sql`update driver_state set received_at = now() - interval '2 minutes' where driver_id = ${target}`;
  await loop;
  expect(await statusOf(target)).toBe("offline");
  // Each sweep stamps the job's heartbeat (0025).
  const [beat] = await db.sql<{ age_s: number }[]>`select age_s from upkeep_heartbeats() where job = 'sweep_offline_drivers'`;
  expect(beat!.age_s).toBeLessThan(5);
});
