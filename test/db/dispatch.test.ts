// Dispatch (migration 0011): nearest_available_driver finds exactly the driver an exhaustive scan finds, and
// assign_nearest_driver(order, cells, bounds, covered) hands each order to one driver, never one driver to two
// orders, under concurrency, with stale, busy and vanishing drivers. On real PostgreSQL + PostGIS.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  areaArguments,
  assignInWideningAreas,
  type SearchArea,
  searchArea,
  searchAreas,
} from "../../api/modules/orders/assignment.ts";
import { cellToLatLng } from "h3-js";
import { connectDatabase, type Sql, sqlState } from "../../lib/db.ts";
import { cellOf } from "../../lib/h3.ts";
import { createRng } from "../../lib/random.ts";
import { serviceUrl } from "../../tools/service-url.ts";
import { waitFor } from "../api/support/wait.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import {
  CENTRE,
  type DriverSpec,
  dispatchFixtures,
  geography,
  modeOf,
  M_PER_DEG_LAT,
  M_PER_DEG_LON,
  offset,
  RESOLUTION,
} from "./support/dispatch-fixtures.ts";

let db: TestDatabase;
let fixtures: ReturnType<typeof dispatchFixtures>;
const clearFleet = () => fixtures.clearFleet();
const placeDrivers = (specs: DriverSpec[]) => fixtures.placeDrivers(specs);
const placeOrder = (at: { lat: number; lon: number }, sql?: Sql) => fixtures.placeOrder(at, sql);

beforeAll(async () => {
  db = await freshDatabase("dispatch");
  fixtures = dispatchFixtures(db);
});

afterAll(async () => {
  await db?.drop();
});

/** 0011's search, widening as the API does. */
async function nearest(p: { lat: number; lon: number }) {
  for (const area of searchAreas(p.lat, p.lon, RESOLUTION)) {
    const [row] = await db.sql<{ driver_id: string }[]>`
      select driver_id from nearest_available_driver(${geography(db.sql, p)}, ${areaArguments(db.sql, area)})`;
    if (row) return row.driver_id;
  }
  return undefined;
}

/** What an exhaustive scan says: the nearest available, free, fresh driver within 15 km, ties to the smaller id. */
async function exhaustive(p: { lat: number; lon: number }) {
  const [row] = await db.sql<{ driver_id: string }[]>`
    select driver_id from driver_state
    where status = 'available' and current_order_id is null
      and received_at > now() - make_interval(secs => (select offline_after_s from tracking_settings))
      and st_dwithin(position, ${geography(db.sql, p)}, 15000, false)
    order by position <-> ${geography(db.sql, p)}, driver_id limit 1`;
  return row?.driver_id;
}

/** assign_nearest_driver as the API calls it: area by area; the driver, or undefined when none is in reach. */
async function assign(orderId: string, at: { lat: number; lon: number }, sql: Sql = db.sql) {
  const row = await assignInWideningAreas(searchAreas(at.lat, at.lon, RESOLUTION), async (area) => {
    const [r] = await sql<{ driver_id: string }[]>`
      select driver_id from assign_nearest_driver(${orderId}, ${areaArguments(sql, area)})`;
    return r!;
  });
  return row?.driver_id;
}

describe("the search is exact", () => {
  const rng = createRng(11, "dispatch-test");
  const scatter = (radiusM: number) => offset(rng.between(-radiusM, radiusM), rng.between(-radiusM, radiusM));
  let driverCount = 0;

  beforeAll(async () => {
    await clearFleet();
    // A busy centre and a sparse outskirt; some drivers stale, busy or offline, which the search must skip.
    const specs: DriverSpec[] = [
      ...Array.from({ length: 1500 }, () => ({
        ...scatter(1500),
        status: rng.pick(["available", "available", "available", "offline", "assigned"] as const),
      })),
      ...Array.from({ length: 60 }, () => ({ ...scatter(6000) })),
      ...Array.from({ length: 300 }, () => ({ ...scatter(1500), silentS: 600 })),
    ];
    driverCount = (await placeDrivers(specs)).length;
    await db.sql`analyze driver_state`;
  });

  test("every cell's bound is below the distance of every driver in it, and nobody outside is nearer than covered", async () => {
    expect(driverCount).toBe(1860);
    for (let i = 0; i < 20; i++) {
      const p = scatter(2000);
      for (const area of searchAreas(p.lat, p.lon, RESOLUTION).filter((a): a is SearchArea => a !== null)) {
        const [check] = await db.sql<{ under: number; outside_min: number | null; cells_with_drivers: number }[]>`
          with area as (
            select * from unnest(${area.cells.map(String)}::bigint[], ${area.boundsM}::float8[]) as a(cell, bound_m))
          select (select count(*) from driver_state ds join area a on a.cell = ds.h3
                   where st_distance(ds.position, ${geography(db.sql, p)}, false) < a.bound_m)::int as under,
                 (select min(st_distance(ds.position, ${geography(db.sql, p)}, false)) from driver_state ds
                   where ds.h3 not in (select cell from area)) as outside_min,
                 (select count(distinct ds.h3) from driver_state ds join area a on a.cell = ds.h3)::int as cells_with_drivers`;
        expect(check!.under).toBe(0);
        expect(check!.cells_with_drivers).toBeGreaterThan(0);
        if (check!.outside_min !== null) expect(check!.outside_min).toBeGreaterThanOrEqual(area.coveredM);
      }
    }
  });

  test("300 random points, near and far: the same driver as an exhaustive scan", async () => {
    const points = [
      ...Array.from({ length: 240 }, () => scatter(2000)),
      ...Array.from({ length: 50 }, () => scatter(7000)),
      ...Array.from({ length: 10 }, () => scatter(30_000)),
    ];
    const mismatches: string[] = [];
    let found = 0;
    for (const p of points) {
      const [got, want] = [await nearest(p), await exhaustive(p)];
      if (got) found++;
      if (got !== want) mismatches.push(`${p.lat},${p.lon}: ${got} instead of ${want}`);
    }
    expect(mismatches).toEqual([]);
    expect(found).toBeGreaterThan(280);
  }, 120_000);

  test("skipped drivers are skipped, and the next nearest is exact too", async () => {
    const p = scatter(500);
    const area = searchArea(p.lat, p.lon, 2, RESOLUTION);
    const order = await db.sql<{ driver_id: string }[]>`
      select driver_id from driver_state
      where status = 'available' and received_at > now() - interval '60 seconds'
      order by position <-> ${geography(db.sql, p)}, driver_id limit 3`;
    const [second] = await db.sql<{ driver_id: string }[]>`
      select driver_id from nearest_available_driver(${geography(db.sql, p)}, ${areaArguments(db.sql, area)},
                                                     ${[order[0]!.driver_id]}::uuid[])`;
    expect(second!.driver_id).toBe(order[1]!.driver_id);
  });
});

describe("assignment cases", () => {
  const RESTAURANT = offset(0, 0);
  beforeEach(clearFleet);

  // Each row: drivers around the restaurant (metres north and east of it), and which of them gets the order (its
  // index), or null for none.
  type Around = Omit<DriverSpec, "lat" | "lon"> & { north: number; east: number };
  const CASES: { name: string; drivers: Around[]; expected: number | null }[] = [
    {
      name: "the nearest of three",
      drivers: [{ north: 300, east: 0 }, { north: 40, east: 30 }, { north: -900, east: 0 }],
      expected: 1,
    },
    { name: "no driver in range (30 km away)", drivers: [{ north: 30_000, east: 0 }], expected: null },
    { name: "no driver at all", drivers: [], expected: null },
    {
      name: "a stale driver is skipped for a farther fresh one",
      drivers: [{ north: 10, east: 0, silentS: 120 }, { north: 250, east: 0 }],
      expected: 1,
    },
    { name: "only stale drivers: none", drivers: [{ north: 10, east: 0, silentS: 120 }], expected: null },
    {
      name: "offline and busy drivers are skipped",
      drivers: [{ north: 5, east: 0, status: "offline" }, { north: 0, east: 8, status: "assigned" }, { north: 600, east: 0 }],
      expected: 2,
    },
    {
      name: "the only driver is 1.5 km off: beyond the first area, found in the next",
      drivers: [{ north: 0, east: 1500 }],
      expected: 0,
    },
    {
      name: "the only driver is 9 km off: beyond the rings, found by the exhaustive fallback",
      drivers: [{ north: -9000, east: 0 }],
      expected: 0,
    },
  ];

  for (const c of CASES) {
    test(c.name, async () => {
      const ids = await placeDrivers(c.drivers.map((d) => ({ ...d, ...offset(d.north, d.east) })));
      const orderId = await placeOrder(RESTAURANT);
      const got = await assign(orderId, RESTAURANT);
      if (c.expected === null) {
        expect(got).toBeUndefined();
        const [o] = await db.sql<{ status: string }[]>`select status from orders where id = ${orderId}`;
        expect(o!.status).toBe("confirmed");
      } else {
        expect(got).toBe(ids[c.expected]!);
        const [s] = await db.sql<{ status: string; current_order_id: string }[]>`
          select status, current_order_id from driver_state where driver_id = ${got!}`;
        expect(s).toEqual({ status: "assigned", current_order_id: orderId });
      }
    });
  }

  test("the assignment (0015, one pass) leaves what order_transition leaves: rows, history, notices", async () => {
    // Two identical set-ups: one assigned by assign_nearest_driver, one by order_transition with the same driver.
    const [viaSearch, viaTransition] = await placeDrivers([offset(5, 0), offset(0, 5_000)]);
    const searched = await placeOrder(RESTAURANT);
    const direct = await placeOrder(offset(0, 5_000));
    const { orders: notices, modes } = await fixtures.noticesDuring(async () => {
      expect(await assign(searched, RESTAURANT)).toBe(viaSearch!);
      await db.sql`select order_transition(${direct}, 'assign', ${viaTransition!})`;
    }, 2);
    const got = await fixtures.assignmentEffects(searched, viaSearch!);
    expect(got).toEqual(await fixtures.assignmentEffects(direct, viaTransition!));
    expect(got.history).toEqual([
      { entity: "driver", from_status: "available", to_status: "assigned", event: "assign" },
      { entity: "order", from_status: "confirmed", to_status: "assigned", event: "assign" },
    ]);
    // The same notices: the order's status on order_tracking, the driver's new mode on driver_mode (0013's trigger).
    expect(notices.map((n) => JSON.parse(n))).toEqual([
      { order_id: searched, status: "assigned" },
      { order_id: direct, status: "assigned" },
    ]);
    expect(modeOf(modes[0]!)).toEqual(modeOf(modes[1]!));
  });

  test("an area that cannot prove its driver the nearest says T1409, not a farther driver", async () => {
    // The only driver sits in the first area's outer ring, beyond what that area covers (another driver outside
    // the area could be nearer): the first area declines, the next one takes it.
    const p = RESTAURANT;
    const area = searchArea(p.lat, p.lon, 2, RESOLUTION);
    const farCell = area.cells[area.cells.length - 1]!;
    // 100 m beyond the far cell's centre, away from the restaurant: still in that cell, farther than its centre.
    const [cLat, cLon] = cellToLatLng(farCell.toString(16));
    const north = (cLat - p.lat) * M_PER_DEG_LAT;
    const east = (cLon - p.lon) * M_PER_DEG_LON;
    const stretch = 1 + 100 / Math.hypot(north, east);
    const spot = offset(north * stretch, east * stretch);
    expect(cellOf(spot.lat, spot.lon, RESOLUTION)).toBe(farCell);
    const [far] = await placeDrivers([spot]);
    const [{ distance }] = (await db.sql`select st_distance(position, ${geography(db.sql, p)}, false) as distance
                                         from driver_state where driver_id = ${far!}`) as unknown as [{ distance: number }];
    expect(distance).toBeGreaterThan(area.coveredM);
    const orderId = await placeOrder(p);
    const first = db.sql`select * from assign_nearest_driver(${orderId}, ${areaArguments(db.sql, area)})`;
    expect(await first.then(() => "assigned", (e) => sqlState(e))).toBe("T1409");
    expect(await assign(orderId, p)).toBe(far!);
  });

  test("mismatched cells and bounds are refused", async () => {
    const attempt = db.sql`select * from nearest_available_driver(${geography(db.sql, RESTAURANT)},
                                      ${["1", "2"]}::bigint[], ${[0]}::real[], 100::real)`;
    expect(await attempt.then(() => "ok", (e) => sqlState(e))).toBe("22023");
  });
});

/** Resolves once `pid` waits for a lock (pg_stat_activity), or `done` has settled: never a sleep for a time window. */
async function waitUntilBlocked(pid: number, done: Promise<unknown>) {
  let settled = false;
  done.then(() => (settled = true), () => (settled = true));
  while (!settled) {
    const [row] = await db.sql<{ waiting: boolean }[]>`
      select wait_event_type = 'Lock' as waiting from pg_stat_activity where pid = ${pid}`;
    if (row?.waiting) return;
    await Bun.sleep(5);
  }
}

describe("concurrency", () => {
  const RESTAURANT = offset(100, -200);
  beforeEach(clearFleet);

  // The nearest driver changes under a waiting assignment: it re-checks after the lock and takes the next nearest.
  const RACES: { name: string; meanwhile: (tx: Sql, nearestId: string) => Promise<unknown> }[] = [
    {
      name: "the nearest driver goes offline mid-assignment",
      meanwhile: (tx, id) => tx`update driver_state set status = 'offline' where driver_id = ${id}`,
    },
    {
      name: "the nearest driver goes stale mid-assignment",
      meanwhile: (tx, id) => tx`update driver_state set received_at = now() - interval '10 minutes' where driver_id = ${id}`,
    },
    {
      name: "a concurrent assignment takes the nearest driver first",
      meanwhile: async (tx) => {
        const other = await placeOrder(RESTAURANT, tx);
        return assign(other, RESTAURANT, tx);
      },
    },
  ];

  for (const race of RACES) {
    test(race.name, async () => {
      const [nearestId, nextId] = await placeDrivers([
        { ...offset(110, -200) },
        { ...offset(100, -120) },
        { ...offset(-400, -200) },
      ]);
      const orderId = await placeOrder(RESTAURANT);
      const assigner = connectDatabase(db.url, { max: 1, application: "test-dispatch-race" });
      try {
        const [{ pid }] = (await assigner`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
        let assigned: Promise<string | undefined> | undefined;
        await db.sql.begin(async (transaction) => {
          const tx = transaction as unknown as Sql;
          await tx`select 1 from driver_state where driver_id = ${nearestId!} for update`;
          await race.meanwhile(tx, nearestId!);
          assigned = assign(orderId, RESTAURANT, assigner);
          await waitUntilBlocked(pid, assigned);
        });
        expect(await assigned!).toBe(nextId!);
      } finally {
        await assigner.end({ timeout: 5 });
      }
      const rows = await db.sql<{ driver_id: string; n: number }[]>`
        select driver_id, count(*)::int as n from orders where status = 'assigned' group by driver_id`;
      expect(rows.every((r) => r.n === 1)).toBe(true);
    });
  }

  test("many concurrent assignments: no driver shared, no order assigned twice, the short side all served", async () => {
    const rng = createRng(5, "dispatch-concurrency");
    const near = (p: { lat: number; lon: number }) => ({
      lat: p.lat + rng.between(-0.003, 0.003),
      lon: p.lon + rng.between(-0.004, 0.004),
    });
    const restaurants = Array.from({ length: 8 }, () => offset(rng.between(-1500, 1500), rng.between(-1500, 1500)));
    // Fewer drivers than orders, all near the same few restaurants: every driver is contended.
    const drivers = await placeDrivers(Array.from({ length: 90 }, () => near(rng.pick(restaurants))));
    const orders = await Promise.all(
      Array.from({ length: 120 }, (_, i) => restaurants[i % restaurants.length]!).map(async (at) => ({ at, id: await placeOrder(at) })),
    );
    const callers = connectDatabase(db.url, { max: 16, application: "test-dispatch-many" });
    try {
      const results = await Promise.all(orders.map((o) => assign(o.id, o.at, callers)));
      const given = results.filter((d): d is string => d !== undefined);
      expect(given.length).toBe(drivers.length);
      expect(new Set(given).size).toBe(given.length);
    } finally {
      await callers.end({ timeout: 5 });
    }
    const [check] = await db.sql<{ assigned: number; shared: number; doubled: number; mismatched: number; history: number }[]>`
      select (select count(*) from orders where status = 'assigned')::int as assigned,
             (select count(*) from (select driver_id from orders where status = 'assigned'
                                    group by driver_id having count(*) > 1) x)::int as shared,
             (select count(*) from (select entity_id from state_history where entity = 'order' and to_status = 'assigned'
                                    group by entity_id having count(*) > 1) x)::int as doubled,
             (select count(*) from orders o join driver_state ds on ds.driver_id = o.driver_id
               where o.status = 'assigned' and (ds.current_order_id <> o.id or ds.status <> 'assigned'))::int as mismatched,
             (select count(*) from state_history where entity = 'order' and to_status = 'assigned')::int as history`;
    expect(check).toEqual({ assigned: 90, shared: 0, doubled: 0, mismatched: 0, history: 90 });
  }, 60_000);
});

describe("rights and the ingest path", () => {
  test("the API may assign through 0011's function, not search or touch it otherwise; the worker may not assign", async () => {
    await clearFleet();
    const orderId = await placeOrder(CENTRE);
    const area = searchArea(CENTRE.lat, CENTRE.lon, 2, RESOLUTION);
    const api = connectDatabase(serviceUrl(db.url, "tracking_api"), { max: 1, application: "test-dispatch-api" });
    const worker = connectDatabase(serviceUrl(db.url, "tracking_worker"), { max: 1, application: "test-dispatch-worker" });
    const outcome = (q: Promise<unknown>) => q.then(() => "allowed", (e) => sqlState(e) ?? String(e));
    try {
      expect(await outcome(api`select * from assign_nearest_driver(${orderId}, ${areaArguments(api, area)})`)).toBe("T1409");
      expect(await outcome(api`select * from nearest_available_driver(${geography(api, CENTRE)}, ${areaArguments(api, area)})`)).toBe("42501");
      expect(await outcome(worker`select * from assign_nearest_driver(${orderId}, ${areaArguments(worker, area)})`)).toBe("42501");
    } finally {
      await Promise.all([api.end({ timeout: 5 }), worker.end({ timeout: 5 })]);
    }
    const [fn] = await db.sql<{ definer: boolean; config: string[] }[]>`
      select prosecdef as definer, proconfig as config from pg_proc
      where oid = 'assign_nearest_driver(uuid, bigint[], real[], real)'::regprocedure`;
    expect(fn).toEqual({ definer: true, config: ["search_path=public, pg_temp"] });
  });

  test("driver_state keeps its two indexes and only 0013's status triggers: a move within a cell is still a HOT update", async () => {
    await clearFleet();
    const [indexes] = await db.sql<{ names: string[] }[]>`
      select array_agg(indexname::text order by indexname) as names from pg_indexes where tablename = 'driver_state'`;
    expect(indexes!.names).toEqual(["driver_state_available_h3", "driver_state_pkey"]);
    // The reporting-mode triggers (0013) fire on an insert or a status change only: a position update runs neither.
    const triggers = await db.sql<{ name: string; definition: string }[]>`
      select tgname::text as name, pg_get_triggerdef(oid) as definition
      from pg_trigger where tgrelid = 'driver_state'::regclass and not tgisinternal order by tgname`;
    expect(triggers.map((t) => t.name)).toEqual(["driver_mode_changed", "driver_mode_inserted"]);
    expect(triggers[0]!.definition).toContain("AFTER UPDATE OF status ON public.driver_state");
    expect(triggers[0]!.definition).toContain("WHEN ((old.status IS DISTINCT FROM new.status))");
    expect(triggers[1]!.definition).toContain("AFTER INSERT ON public.driver_state");
    const [id] = await placeDrivers([{ ...CENTRE }]);
    // The backend's pending counts also hold its earlier transactions' until they are flushed (at most once a
    // second), so the update's own HOT count is the difference across it, within one transaction.
    const hot = await db.sql.begin(async (tx) => {
      const hotCount = async () =>
        (await tx<{ hot: number }[]>`select pg_stat_get_xact_tuples_hot_updated('driver_state'::regclass)::int as hot`)[0]!.hot;
      const before = await hotCount();
      await tx`update driver_state set lat = lat + 0.00001, position_at = now(), received_at = now(),
                 position = st_setsrid(st_makepoint(lon, lat + 0.00001), 4326)::geography where driver_id = ${id!}`;
      return (await hotCount()) - before;
    });
    expect(hot).toBe(1);
  });
});
