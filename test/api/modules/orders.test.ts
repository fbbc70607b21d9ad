import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { assignInWideningAreas, bigintArray, searchAreas } from "../../../api/modules/orders/assignment.ts";
import { config } from "../../../lib/config.ts";
import { cellOf, cellsAround } from "../../../lib/h3.ts";
import { applyPositions } from "../../support/positions.ts";
import { type Caller, customer, driver, OPS, restaurant } from "../support/auth.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { type OrderStep, orderParties } from "../support/orders.ts";
import { allowTeleports, ORIGIN, offset, type Point, seedCustomer, seedDriver, seedRestaurant } from "../support/seed.ts";

let h: Harness;
let customerId: string;
const NOWHERE = "00000000-0000-4000-8000-000000000000";
const items = [
  { name: "Dan dan noodles", qty: 2, price_cents: 1250 },
  { name: "Tea", qty: 1, price_cents: 300 },
];

beforeAll(async () => {
  h = await startHarness("api_orders");
  await allowTeleports(h.sql);
  customerId = await seedCustomer(h.sql);
});
afterAll(() => h.close());

// Each step as the order's own party.
const act = (orderId: string, step: OrderStep) => orderParties(h).act(orderId, step);

/** A restaurant of its own (so one test's drivers never serve another's orders) and an order from it. */
async function newOrder(restaurantAt: Point, delivery: Point = offset(restaurantAt, 1000, 0)) {
  const restaurantId = await seedRestaurant(h.sql, restaurantAt);
  const res = await h.call(
    "POST",
    "/orders",
    { customer_id: customerId, restaurant_id: restaurantId, delivery, items },
    { as: customer(customerId) },
  );
  expect(res.status).toBe(201);
  const { tracking: _link, ...order } = res.body; // the placing answer alone carries the tracking link
  return { restaurantId, order, delivery };
}

/** Areas far apart, so tests sharing the database do not find each other's drivers. */
let areaIndex = 0;
const newArea = () => offset(ORIGIN, 0, 40_000 * ++areaIndex);

describe("POST /orders", () => {
  test("creates an order in state created", async () => {
    const restaurantId = await seedRestaurant(h.sql);
    const delivery = offset(ORIGIN, 800, 200);
    const res = await h.call(
      "POST",
      "/orders",
      { customer_id: customerId, restaurant_id: restaurantId, delivery, items },
      { as: customer(customerId) },
    );
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      customer_id: customerId,
      restaurant_id: restaurantId,
      status: "created",
      items,
      total_cents: 2 * 1250 + 300,
      driver: null,
      eta_seconds: null,
      confirmed_at: null,
    });
    expect(res.body.delivery.lat).toBeCloseTo(delivery.lat, 9);
    expect(res.body.delivery.lon).toBeCloseTo(delivery.lon, 9);
    expect(Date.parse(res.body.created_at)).toBeGreaterThan(Date.now() - 60_000);
    const [row] = await h.sql`select status, items from orders where id = ${res.body.id}`;
    expect(row).toEqual({ status: "created", items });
  });

  const valid = () => ({ customer_id: customerId, restaurant_id: NOWHERE, delivery: { lat: 40.7, lon: -73.9 }, items });
  const bad: [string, unknown][] = [
    ["malformed JSON", '{"customer_id": '],
    ["a JSON array", "[]"],
    ["no body", undefined],
    ["a missing field", { ...valid(), items: undefined }],
    ["no items", { ...valid(), items: [] }],
    ["a non-UUID customer", { ...valid(), customer_id: "ada" }],
    ["latitude out of range", { ...valid(), delivery: { lat: 91, lon: 0 } }],
    ["longitude out of range", { ...valid(), delivery: { lat: 0, lon: -180.5 } }],
    ["a string latitude", { ...valid(), delivery: { lat: "40.7", lon: -73.9 } }],
    ["a zero quantity", { ...valid(), items: [{ name: "x", qty: 0, price_cents: 1 }] }],
    ["a string quantity", { ...valid(), items: [{ name: "x", qty: "2", price_cents: 1 }] }],
    ["a fractional quantity", { ...valid(), items: [{ name: "x", qty: 1.5, price_cents: 1 }] }],
    ["a negative price", { ...valid(), items: [{ name: "x", qty: 1, price_cents: -1 }] }],
    ["an item without name", { ...valid(), items: [{ qty: 1, price_cents: 1 }] }],
    ["items not a list", { ...valid(), items: "noodles" }],
  ];
  for (const [what, body] of bad) {
    test(`400 VALIDATION for ${what}`, async () => {
      const res =
        body === undefined
          ? await h.call("POST", "/orders", undefined, { as: customer(customerId) })
          : await h.call("POST", "/orders", typeof body === "string" ? body : body, { as: customer(customerId) });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("VALIDATION");
      expect(typeof res.body.error.message).toBe("string");
    });
  }

  test("404 for an unknown restaurant or customer", async () => {
    const restaurantId = await seedRestaurant(h.sql);
    const delivery = { lat: 40.74, lon: -73.99 };
    const noRestaurant = await h.call(
      "POST",
      "/orders",
      { customer_id: customerId, restaurant_id: NOWHERE, delivery, items },
      { as: customer(customerId) },
    );
    expect(noRestaurant.status).toBe(404);
    expect(noRestaurant.body.error).toEqual({ code: "NOT_FOUND", message: `restaurant ${NOWHERE} does not exist` });
    // A valid token for a customer the database does not know (an IdP ahead of our data).
    const noCustomer = await h.call(
      "POST",
      "/orders",
      { customer_id: NOWHERE, restaurant_id: restaurantId, delivery, items },
      { as: customer(NOWHERE) },
    );
    expect(noCustomer.status).toBe(404);
    expect(noCustomer.body.error).toEqual({ code: "NOT_FOUND", message: `customer ${NOWHERE} does not exist` });
  });
});

describe("order ids in paths", () => {
  const someone = () => crypto.randomUUID();
  const routes: [string, string, () => Caller][] = [
    ["GET", "", () => OPS],
    ["POST", "/confirm", () => restaurant(someone())],
    ["POST", "/assign", () => restaurant(someone())],
    ["POST", "/pickup", () => driver(someone())],
    ["POST", "/deliver", () => driver(someone())],
    ["POST", "/cancel", () => customer(customerId)],
  ];
  for (const [method, suffix, as] of routes) {
    test(`${method} /orders/{id}${suffix}: 400 INVALID_ID for a non-UUID, 404 for an unknown order`, async () => {
      const bad = await h.call(method, `/orders/not-a-uuid${suffix}`, undefined, { as: as() });
      expect(bad.status).toBe(400);
      expect(bad.body.error.code).toBe("INVALID_ID");
      const unknown = await h.call(method, `/orders/${NOWHERE}${suffix}`, undefined, { as: as() });
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe("NOT_FOUND");
      expect(unknown.body.error.message).toContain(NOWHERE);
    });
  }
});

describe("GET /orders/{id}", () => {
  test("returns the order as created", async () => {
    const { order } = await newOrder(newArea());
    const res = await h.call("GET", `/orders/${order.id}`, undefined, { as: OPS });
    expect(res.status).toBe(200);
    expect(res.body).toEqual(order);
  });
});

describe("confirm and assign", () => {
  test("confirm assigns the nearest available driver with a fresh position", async () => {
    const area = newArea();
    const far = await seedDriver(h.sql, { name: "Far", at: offset(area, 0, -600) });
    const near = await seedDriver(h.sql, { name: "Near", at: offset(area, 300, 0) });
    await seedDriver(h.sql, { name: "Stale", at: offset(area, 50, 0), positionAgeSeconds: 600 });
    await seedDriver(h.sql, { name: "Offline", state: "offline", at: offset(area, 20, 0) });
    const { order } = await newOrder(area);

    const res = await act(order.id, "confirm");
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("assigned");
    expect(res.body.driver).toEqual({ id: near, name: "Near" });
    expect(res.body.confirmed_at).not.toBeNull();
    expect(res.body.assigned_at).not.toBeNull();

    const [state] = await h.sql`select status, current_order_id from driver_state where driver_id = ${near}`;
    expect(state).toEqual({ status: "assigned", current_order_id: order.id });
    const [other] = await h.sql`select status from driver_state where driver_id = ${far}`;
    expect(other!.status).toBe("available");
  });

  test("the search widens to 15 rings, then to the distance fallback", async () => {
    const threeKm = newArea();
    const ringDriver = await seedDriver(h.sql, { at: offset(threeKm, 0, 3000) });
    const a = await newOrder(threeKm);
    expect((await act(a.order.id, "confirm")).body.driver.id).toBe(ringDriver);

    const tenKm = newArea();
    const fallbackDriver = await seedDriver(h.sql, { at: offset(tenKm, 10_000, 0) });
    const restaurantCell = cellOf(tenKm.lat, tenKm.lon, config().h3Resolution);
    const driverCell = cellOf(tenKm.lat + 10_000 / 111_320, tenKm.lon, config().h3Resolution);
    expect(cellsAround(restaurantCell, 15)).not.toContain(driverCell); // really beyond the rings
    const b = await newOrder(tenKm);
    const res = await act(b.order.id, "confirm");
    expect(res.body.status).toBe("assigned");
    expect(res.body.driver.id).toBe(fallbackDriver);
  });

  test("with no driver in reach the order stays confirmed; /assign retries later", async () => {
    const area = newArea();
    const { order } = await newOrder(area);
    await seedDriver(h.sql, { at: offset(area, 20_000, 0) }); // beyond the 15 km fallback

    const confirmed = await act(order.id, "confirm");
    expect(confirmed.status).toBe(200);
    expect(confirmed.body).toMatchObject({ status: "confirmed", driver: null });

    const none = await act(order.id, "assign");
    expect(none.status).toBe(409);
    expect(none.body.error.code).toBe("NO_DRIVER_AVAILABLE");

    const driver = await seedDriver(h.sql, { at: offset(area, 100, 100) });
    const assigned = await act(order.id, "assign");
    expect(assigned.status).toBe(200);
    expect(assigned.body).toMatchObject({ status: "assigned", driver: { id: driver } });
  });

  test("two orders confirmed at once never share the one driver", async () => {
    const area = newArea();
    const driver = await seedDriver(h.sql, { at: offset(area, 100, 0) });
    const first = await newOrder(area);
    const second = await newOrder(area);
    const answers = await Promise.all([
      act(first.order.id, "confirm"),
      act(second.order.id, "confirm"),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect(answers.map((a) => a.body.status).sort()).toEqual(["assigned", "confirmed"]);
    expect(answers.find((a) => a.body.status === "assigned")!.body.driver.id).toBe(driver);
  });

  test("refused moves are 409 TRANSITION_REFUSED with the database's message", async () => {
    const area = newArea();
    await seedDriver(h.sql, { at: offset(area, 100, 0) });
    const { order } = await newOrder(area);
    const early = await act(order.id, "assign"); // not confirmed yet
    expect(early.status).toBe(409);
    expect(early.body.error).toEqual({
      code: "TRANSITION_REFUSED",
      message: `order ${order.id} cannot go from created to assigned`,
    });
    // Before assignment no driver is the order's: a pickup or delivery is refused before the state machine sees it.
    for (const event of ["pickup", "deliver"] as const) {
      const res = await act(order.id, event);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe("NOT_FOUND");
    }
    expect((await act(order.id, "confirm")).body.status).toBe("assigned");
    const twice = await act(order.id, "confirm");
    expect(twice.status).toBe(409);
    expect(twice.body.error.message).toBe(`order ${order.id} cannot go from assigned to confirmed`);
  });
});

describe("cancel", () => {
  test("a created order is cancelled", async () => {
    const { order } = await newOrder(newArea());
    const res = await act(order.id, "cancel");
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("cancelled");
    expect(res.body.cancelled_at).not.toBeNull();
    expect((await act(order.id, "cancel")).status).toBe(409);
  });

  test("cancelling an assigned order frees its driver", async () => {
    const area = newArea();
    const driver = await seedDriver(h.sql, { at: offset(area, 100, 0) });
    const { order } = await newOrder(area);
    await act(order.id, "confirm");
    const res = await act(order.id, "cancel");
    expect(res.body.status).toBe("cancelled");
    const [state] = await h.sql`select status, current_order_id from driver_state where driver_id = ${driver}`;
    expect(state).toEqual({ status: "available", current_order_id: null });
  });
});

describe("a whole delivery", () => {
  test("create, confirm, reach the restaurant, pick up, arrive, deliver", async () => {
    const area = newArea();
    const driverId = await seedDriver(h.sql, { name: "Rosa", at: offset(area, 0, 400) });
    const { order, delivery } = await newOrder(area, offset(area, 1500, 0));
    const driverState = async () =>
      (await h.sql`select status from driver_state where driver_id = ${driverId}`)[0]!.status as string;

    expect((await act(order.id, "confirm")).body.status).toBe("assigned");
    expect(await driverState()).toBe("assigned");

    // Not at the restaurant yet: the driver machine refuses the pickup.
    const tooEarly = await act(order.id, "pickup");
    expect(tooEarly.status).toBe(409);
    expect(tooEarly.body.error.message).toContain("cannot take event \"pickup\" in state assigned");

    await applyPositions(h.sql, [{ driverId, ...offset(area, 0, 200), speedKmh: 20 }]);
    expect(await driverState()).toBe("assigned");
    const onTheWay = await h.call("GET", `/track/${order.id}`, undefined, { as: OPS });
    expect(onTheWay.body.eta_seconds).toBeGreaterThan(0);

    const batch = await applyPositions(h.sql, [{ driverId, ...offset(area, 0, 30), speedKmh: 10 }]);
    expect(batch.transitions).toBe(1);
    expect(await driverState()).toBe("at_restaurant");

    const pickedUp = await act(order.id, "pickup");
    expect(pickedUp.status).toBe(200);
    expect(pickedUp.body.status).toBe("picked_up");
    expect(await driverState()).toBe("delivering");

    const notYet = await act(order.id, "deliver");
    expect(notYet.status).toBe(409);
    expect(notYet.body.error.code).toBe("TRANSITION_REFUSED");
    expect((await act(order.id, "cancel")).status).toBe(409); // too late to cancel

    await applyPositions(h.sql, [{ driverId, ...offset(area, 700, 0), speedKmh: 25 }]);
    const halfway = (await h.call("GET", `/orders/${order.id}`, undefined, { as: OPS })).body;
    expect(halfway.eta_seconds).toBeGreaterThan(0);

    await applyPositions(h.sql, [{ driverId, ...offset(delivery, -20, 0), speedKmh: 5 }]);
    expect(await driverState()).toBe("arriving");

    const delivered = await act(order.id, "deliver");
    expect(delivered.status).toBe(200);
    expect(delivered.body).toMatchObject({ status: "delivered", eta_seconds: null, driver: { id: driverId } });
    expect(delivered.body.delivered_at).not.toBeNull();
    expect(await driverState()).toBe("available");

    const history = await h.sql<{ to_status: string }[]>`
      select to_status from state_history where entity = 'order' and entity_id = ${order.id} order by id`;
    expect(history.map((r) => r.to_status)).toEqual(["confirmed", "assigned", "picked_up", "delivered"]);
  });
});

describe("assignment areas", () => {
  test("rings nearest first, cells ordered by distance bound, then the distance fallback", () => {
    const cell = cellOf(ORIGIN.lat, ORIGIN.lon, 9);
    const areas = searchAreas(ORIGIN.lat, ORIGIN.lon, 9);
    expect(areas.map((a) => a?.cells.length ?? null)).toEqual([19, 217, null]); // 3k(k+1)+1 cells
    expect(areas[0]!.cells[0]).toBe(cell);
    expect(areas[0]!.boundsM).toEqual([...areas[0]!.boundsM].sort((a, b) => a - b));
    expect(areas[1]!.coveredM).toBeGreaterThan(areas[0]!.coveredM);
  });

  test("bigint arrays reach PostgreSQL as bigint[] with every value intact", async () => {
    const cells = cellsAround(cellOf(ORIGIN.lat, ORIGIN.lon, 9), 2);
    const [row] = await h.sql<{ type: string; n: number; same: boolean }[]>`
      select pg_typeof(a)::text as type, cardinality(a) as n, a = ${bigintArray(h.sql, cells)} as same
      from (select ${bigintArray(h.sql, cells)} as a) x`;
    expect(row).toEqual({ type: "bigint[]", n: cells.length, same: true });
    const [first] = await h.sql<{ hit: boolean }[]>`
      select ${cells[3]!.toString()}::bigint = any (${bigintArray(h.sql, cells)}) as hit`;
    expect(first!.hit).toBe(true);
  });

  test("only 'no driver' widens the search; any other error stops it", async () => {
    const tried: (number | null)[] = [];
    const noDriver = Object.assign(new Error("none"), { code: "T1409" });
    const found = await assignInWideningAreas([[1n], [1n, 2n], null], async (cells) => {
      tried.push(cells?.length ?? null);
      if (cells !== null) throw noDriver;
      return "fallback";
    });
    expect(found).toBe("fallback");
    expect(tried).toEqual([1, 2, null]);

    const refused = Object.assign(new Error("refused"), { code: "T1002" });
    const calls: number[] = [];
    const attempt = assignInWideningAreas([[1n], null], async () => {
      calls.push(1);
      throw refused;
    });
    await expect(attempt).rejects.toBe(refused);
    expect(calls.length).toBe(1);

    expect(await assignInWideningAreas([[1n], null], async () => Promise.reject(noDriver))).toBeUndefined();
  });
});
