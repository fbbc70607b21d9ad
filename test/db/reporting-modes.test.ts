// Reporting modes (migration 0013) on real PostGIS: the mode of every driver state, one `driver_mode` notice per MODE
// change from every path that moves a driver (driver_transition, the apply procedure, the sweep, order_transition,
// assign_nearest_driver, an insert), none for a state change within a mode or for positions, 0012's queue limit
// respected; and dispatch and the geofences still working when available drivers batch their fixes every 30 s.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connectDatabase, type Sql } from "../../lib/db.ts";
import { serviceUrl } from "../../tools/service-url.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { applyPositions, type StagedPosition } from "../support/positions.ts";

let db: TestDatabase;
let worker: Sql;
let api: Sql;
let customer: string;
let restaurant: string;
const RESTAURANT = { lat: 40.75, lon: -73.98 };
const DELIVERY = { lat: 40.73, lon: -73.99 };
// ~1.1 km from the restaurant, outside both geofences (75 m).
const AWAY = { lat: 40.76, lon: -73.98 };

interface ModeNotice {
  driver_id: string;
  mode: string;
  state: string;
  at: string;
}
const heard: string[] = [];

beforeAll(async () => {
  db = await freshDatabase("reporting_modes");
  worker = connectDatabase(serviceUrl(db.url, "tracking_worker"), { max: 2, application: "test-modes-worker" });
  api = connectDatabase(serviceUrl(db.url, "tracking_api"), { max: 2, application: "test-modes-api" });
  [{ id: customer }] = (await db.sql`
    insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.99 40.73)') returning id`) as unknown as [
    { id: string },
  ];
  [{ id: restaurant }] = (await db.sql`
    insert into restaurants (name, location, h3)
    values ('r', ${`SRID=4326;POINT(${RESTAURANT.lon} ${RESTAURANT.lat})`}, 1) returning id`) as unknown as [{ id: string }];
  await db.sql.listen("driver_mode", (payload) => heard.push(payload));
}, 120_000);
afterAll(async () => {
  await Promise.all([worker?.end({ timeout: 5 }), api?.end({ timeout: 5 })]);
  await db?.drop();
});

/**
 * The `driver_mode` notices committed while `call` ran: between a marker sent before and one sent after (notices
 * arrive in commit order on the one listening connection, so nothing is waited for but the marker).
 */
async function modeNotices(call: () => Promise<unknown>): Promise<ModeNotice[]> {
  const [before, after] = [`before-${crypto.randomUUID()}`, `after-${crypto.randomUUID()}`];
  await db.sql`select pg_notify('driver_mode', ${before})`;
  await call();
  await db.sql`select pg_notify('driver_mode', ${after})`;
  const deadline = Date.now() + 10_000;
  while (!heard.includes(after) && Date.now() < deadline) await Bun.sleep(5);
  expect(heard).toContain(after);
  return heard.slice(heard.indexOf(before) + 1, heard.indexOf(after)).map((p) => JSON.parse(p) as ModeNotice);
}
const brief = (notices: ModeNotice[]) => notices.map((n) => `${n.mode} ${n.state}`);

async function newDriver(status = "offline", extra: { order?: string; receivedAgoS?: number } = {}): Promise<string> {
  const [{ id }] = (await db.sql`insert into drivers (name) values ('d') returning id`) as unknown as [{ id: string }];
  const ago = extra.receivedAgoS ?? 1;
  await db.sql`
    insert into driver_state (driver_id, status, current_order_id, position, lat, lon, h3, position_at, received_at)
    values (${id}, ${status}::driver_status, ${extra.order ?? null},
            ${`SRID=4326;POINT(${AWAY.lon} ${AWAY.lat})`}, ${AWAY.lat}, ${AWAY.lon}, 1,
            now() - make_interval(secs => ${ago}), now() - make_interval(secs => ${ago}))`;
  return id;
}

async function newOrder(status: string, driver: string | null = null): Promise<string> {
  const [{ id }] = (await db.sql`
    insert into orders (customer_id, restaurant_id, delivery_location, status, driver_id)
    values (${customer}, ${restaurant}, ${`SRID=4326;POINT(${DELIVERY.lon} ${DELIVERY.lat})`}, ${status}::order_status, ${driver})
    returning id`) as unknown as [{ id: string }];
  return id;
}

const statusOf = async (driver: string) =>
  ((await db.sql`select status::text from driver_state where driver_id = ${driver}`) as unknown as [{ status: string }])[0]
    .status;

describe("the mode of each state", () => {
  // One row per driver state: every value of the enum must be here, and in driver_reporting_modes.
  const MODES = {
    offline: "off",
    available: "idle",
    assigned: "live",
    at_restaurant: "live",
    delivering: "live",
    arriving: "live",
  } as const;

  test.each(Object.entries(MODES))("%s → %s", async (state, mode) => {
    const [row] = await db.sql<{ mode: string | null }[]>`select reporting_mode(${state}::driver_status) as mode`;
    expect(row!.mode).toBe(mode);
  });

  test("every driver state has a mode (a new state without one fails here)", async () => {
    const states = await db.sql<{ state: string; mode: string | null }[]>`
      select s::text as state, reporting_mode(s) as mode from unnest(enum_range(null::driver_status)) s`;
    expect(states.map((s) => s.state).sort()).toEqual(Object.keys(MODES).sort());
    expect(states.filter((s) => s.mode === null)).toEqual([]);
  });
});

describe("one notice per mode change, through driver_transition", () => {
  // Every move of driver_transitions (0003): a notice when the mode changes, with the new mode and state.
  const MOVES: [from: string, event: string, notice: string | null][] = [
    ["offline", "online", "idle available"],
    ["offline", "resume_assigned", "live assigned"],
    ["offline", "resume_delivering", "live delivering"],
    ["available", "assign", "live assigned"],
    ["assigned", "enter_restaurant", null],
    ["assigned", "cancel", "idle available"],
    ["at_restaurant", "cancel", "idle available"],
    ["at_restaurant", "pickup", null],
    ["delivering", "enter_delivery", null],
    ["arriving", "deliver", "idle available"],
    ["available", "sign_off", "off offline"],
    ["assigned", "sign_off", "off offline"],
    ["at_restaurant", "sign_off", "off offline"],
    ["delivering", "sign_off", "off offline"],
    ["arriving", "sign_off", "off offline"],
    ["available", "timeout", "off offline"],
    ["assigned", "timeout", "off offline"],
    ["at_restaurant", "timeout", "off offline"],
    ["delivering", "timeout", "off offline"],
    ["arriving", "timeout", "off offline"],
  ];

  test("the table covers every move of the machine", async () => {
    const moves = await db.sql<{ move: string }[]>`
      select from_status::text || '/' || event as move from driver_transitions order by 1`;
    expect(moves.map((m) => m.move)).toEqual(MOVES.map(([from, event]) => `${from}/${event}`).sort());
  });

  test.each(MOVES)("%s + %s → %s", async (from, event, notice) => {
    const driver = await newDriver(from);
    const notices = await modeNotices(() => db.sql`select driver_transition(${driver}, ${event})`);
    expect(brief(notices)).toEqual(notice ? [notice] : []);
    if (notice) {
      expect(notices[0]!.driver_id).toBe(driver);
      expect(Number.isNaN(Date.parse(notices[0]!.at))).toBe(false);
    }
  });
});

describe("the other paths that move drivers", () => {
  test("the apply procedure: an offline driver's position brings it online (idle); further positions say nothing", async () => {
    const driver = await newDriver("offline", { receivedAgoS: 600 });
    const first = await modeNotices(() => applyPositions(worker, [{ driverId: driver, ...AWAY }]));
    expect(brief(first)).toEqual(["idle available"]);
    const more = await modeNotices(() =>
      applyPositions(worker, [{ driverId: driver, lat: AWAY.lat + 0.001, lon: AWAY.lon }]),
    );
    expect(more).toEqual([]);
  });

  test("the apply procedure: an offline driver with a picked-up order resumes delivering (live)", async () => {
    const driver = await newDriver("offline", { receivedAgoS: 600 });
    const order = await newOrder("picked_up", driver);
    await db.sql`update driver_state set current_order_id = ${order} where driver_id = ${driver}`;
    const notices = await modeNotices(() => applyPositions(worker, [{ driverId: driver, ...AWAY }]));
    expect(brief(notices)).toEqual(["live delivering"]);
  });

  test("the apply procedure: entering the restaurant geofence changes the state, not the mode", async () => {
    // Its last position 10 minutes old: the 1.1 km hop is plausible (0008's speed check).
    const driver = await newDriver("assigned", { receivedAgoS: 600 });
    const order = await newOrder("assigned", driver);
    await db.sql`update driver_state set current_order_id = ${order} where driver_id = ${driver}`;
    const notices = await modeNotices(() => applyPositions(worker, [{ driverId: driver, ...RESTAURANT }]));
    expect(notices).toEqual([]);
    expect(await statusOf(driver)).toBe("at_restaurant");
  });

  test("the sweep: silent drivers go off, one notice each; the ones already offline say nothing", async () => {
    const idle = await newDriver("available", { receivedAgoS: 120 });
    const live = await newDriver("delivering", { receivedAgoS: 120 });
    await newDriver("offline", { receivedAgoS: 120 });
    const notices = await modeNotices(() => db.sql`select sweep_offline_drivers(interval '60 seconds')`);
    expect(notices.filter((n) => [idle, live].includes(n.driver_id)).map((n) => `${n.mode} ${n.state}`)).toEqual([
      "off offline",
      "off offline",
    ]);
    expect(notices.every((n) => n.mode === "off")).toBe(true);
  });

  test("order_transition as the API: assign, pickup, deliver, and a cancel", async () => {
    const driver = await newDriver("available");
    const order = await newOrder("confirmed");
    const assign = await modeNotices(() => api`select order_transition(${order}, 'assign', ${driver})`);
    expect(brief(assign)).toEqual(["live assigned"]);
    await db.sql`select driver_transition(${driver}, 'enter_restaurant')`;
    expect(await modeNotices(() => api`select order_transition(${order}, 'pickup')`)).toEqual([]);
    await db.sql`select driver_transition(${driver}, 'enter_delivery')`;
    const deliver = await modeNotices(() => api`select order_transition(${order}, 'deliver')`);
    expect(brief(deliver)).toEqual(["idle available"]);

    const other = await newOrder("confirmed");
    await api`select order_transition(${other}, 'assign', ${driver})`;
    const cancel = await modeNotices(() => api`select order_transition(${other}, 'cancel')`);
    expect(brief(cancel)).toEqual(["idle available"]);
  });

  test("a driver inserted already online is told; one inserted offline is not", async () => {
    const notices = await modeNotices(async () => {
      await newDriver("available");
      await newDriver("offline");
    });
    expect(brief(notices)).toEqual(["idle available"]);
  });
});

describe("under pressure (0012's rule)", () => {
  test("over tracking.notify_queue_limit the notice is skipped and counted; the transition happens anyway", async () => {
    const url = new URL(db.url);
    url.searchParams.set("options", "-c tracking.notify_queue_limit=0");
    const limited = connectDatabase(url.toString(), { max: 1, application: "test-modes-limited" });
    try {
      const skipped = async () =>
        Number((await db.sql<{ skipped: bigint }[]>`select skipped from driver_mode_notice_status()`)[0]!.skipped);
      const before = await skipped();
      const driver = await newDriver("available");
      const notices = await modeNotices(() => limited`select driver_transition(${driver}, 'sign_off')`);
      expect(notices).toEqual([]);
      expect(await statusOf(driver)).toBe("offline");
      expect((await skipped()) - before).toBe(1);
    } finally {
      await limited.end({ timeout: 5 });
    }
  });
});

describe("reconciliation: what differs from what was published", () => {
  test("pages in id order, only the differences, and a recorded mode is no longer one", async () => {
    // A database of its own would be cleaner; instead, everything already published here is recorded first.
    const drain = async () => {
      for (;;) {
        const rows = await db.sql<{ driver_id: string; mode: string; state: string }[]>`
          select * from driver_modes_to_publish(null, 1000)`;
        if (rows.length === 0) return;
        await db.sql`select record_driver_modes_published(${rows.map((r) => r.driver_id)}::uuid[],
          ${rows.map((r) => r.mode)}::text[], ${rows.map((r) => r.state)}::driver_status[])`;
      }
    };
    await drain();
    const drivers = [await newDriver("available"), await newDriver("delivering"), await newDriver("offline")];
    const page = async (after: string | null, limit: number) =>
      db.sql<{ driver_id: string; mode: string }[]>`select driver_id::text, mode from driver_modes_to_publish(${after}, ${limit})`;
    const first = await page(null, 1);
    const second = await page(first[0]!.driver_id, 1);
    const third = await page(second[0]!.driver_id, 1);
    // The offline driver was never published: nothing to correct (no retained message reads as `off`).
    const expected = drivers.slice(0, 2).sort();
    expect([...first, ...second].map((r) => r.driver_id)).toEqual(expected);
    expect(third.length).toBe(0);

    await db.sql`select record_driver_modes_published(${[drivers[0]!]}::uuid[], ${["idle"]}::text[],
      ${["available"]}::driver_status[])`;
    expect((await page(null, 10)).map((r) => r.driver_id)).toEqual([drivers[1]!]);
    // A recorded driver that went offline differs again (it must be told `off`).
    await db.sql`select driver_transition(${drivers[0]!}, 'sign_off')`;
    expect((await page(null, 10)).map((r) => `${r.driver_id} ${r.mode}`).sort()).toEqual(
      [`${drivers[0]!} off`, `${drivers[1]!} live`].sort(),
    );
  });
});

describe("dispatch and geofences with batched idle fixes", () => {
  // An available phone sends ~7 fixes (one every ~4.3 s) per message, at least every 30 s; a watched one each fix.
  const IDLE_SEND_EVERY_S = 30;
  const idleBatch = (driverId: string, receivedAgoS: number, at = AWAY): StagedPosition[] => {
    const received = new Date(Date.now() - receivedAgoS * 1000);
    return Array.from({ length: 7 }, (_, i) => ({
      driverId,
      lat: at.lat + (i - 6) * 0.0002,
      lon: at.lon,
      recordedAt: new Date(received.getTime() - (6 - i) * 4_300 - 200),
      receivedAt: received,
    }));
  };

  test("offline_after_s leaves a whole idle interval of margin: a driver is never swept between two batches", async () => {
    const [{ offline_after_s }] = (await db.sql`select offline_after_s from tracking_settings`) as unknown as [
      { offline_after_s: number },
    ];
    expect(offline_after_s).toBeGreaterThanOrEqual(2 * IDLE_SEND_EVERY_S);
  });

  test("a batch received just under 30 s ago: still available, not swept, and assigned as the nearest driver", async () => {
    // Everyone else here is made unavailable, so the nearest available driver can only be this one.
    await db.sql`update driver_state set status = 'offline' where status = 'available'`;
    const driver = await newDriver("offline", { receivedAgoS: 600 });
    const applied = await applyPositions(worker, idleBatch(driver, IDLE_SEND_EVERY_S - 1));
    expect(applied.applied).toBe(7);
    expect(await statusOf(driver)).toBe("available");
    await db.sql`select sweep_offline_drivers()`;
    expect(await statusOf(driver)).toBe("available");
    const order = await newOrder("confirmed");
    const [assigned] = await api<{ driver_id: string }[]>`
      select driver_id::text from assign_nearest_driver(${order}, null::bigint[], null::real[], 20000)`;
    expect(assigned!.driver_id).toBe(driver);
  });

  test("a driver whose last batch is older than offline_after_s is swept and not dispatched", async () => {
    await db.sql`update driver_state set status = 'offline' where status = 'available'`;
    const driver = await newDriver("offline", { receivedAgoS: 600 });
    await applyPositions(worker, idleBatch(driver, 61));
    await db.sql`select sweep_offline_drivers()`;
    expect(await statusOf(driver)).toBe("offline");
    const order = await newOrder("confirmed");
    const refused = await api`select assign_nearest_driver(${order}, null::bigint[], null::real[], 20000)`.then(
      () => "assigned",
      (error: { code?: string }) => error.code,
    );
    expect(refused).toBe("T1409");
  });

  test("live fixes one per message fire both geofences; a batch whose newest fix is inside fires too", async () => {
    // Its last position is 10 minutes old, so no hop below is judged impossible (0008's speed check).
    const driver = await newDriver("available", { receivedAgoS: 600 });
    const order = await newOrder("confirmed");
    await api`select order_transition(${order}, 'assign', ${driver})`;
    // Watched: single fixes, every 4 s, approaching the restaurant.
    const towards = [0.004, 0.002, 0.0003].map((d, i) => ({
      driverId: driver,
      lat: RESTAURANT.lat + d,
      lon: RESTAURANT.lon,
      recordedAt: new Date(Date.now() - 120_000 + i * 4_000),
    }));
    for (const fix of towards) await applyPositions(worker, [fix]);
    expect(await statusOf(driver)).toBe("at_restaurant");
    await api`select order_transition(${order}, 'pickup')`;
    // A phone that had not yet switched to live sends one last batch; its newest fix is at the door.
    const batch = [0.003, 0.002, 0.001, 0.0002].map((d, i) => ({
      driverId: driver,
      lat: DELIVERY.lat + d,
      lon: DELIVERY.lon,
      recordedAt: new Date(Date.now() - (3 - i) * 4_000),
    }));
    await applyPositions(worker, batch);
    expect(await statusOf(driver)).toBe("arriving");
  });
});
