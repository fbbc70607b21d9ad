import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { config } from "../../../lib/config.ts";
import { cellOf, cellToHex } from "../../../lib/h3.ts";
import { applyPositions } from "../../support/positions.ts";
import { customer } from "../support/auth.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { orderParties } from "../support/orders.ts";
import { allowTeleports, ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "../support/seed.ts";

let h: Harness;
let customerId: string;
let restaurantId: string;
const delivery = offset(ORIGIN, 1200, 0);

beforeAll(async () => {
  h = await startHarness("api_tracking");
  await allowTeleports(h.sql);
  customerId = await seedCustomer(h.sql);
  restaurantId = await seedRestaurant(h.sql, ORIGIN, "Pho Place");
});
afterAll(() => h.close());

async function placeOrder(): Promise<string> {
  const res = await orderParties(h).place({ customerId, restaurantId, delivery, item: "Pho", priceCents: 1400 });
  return res.body.id;
}

describe("GET /track/{order_id}", () => {
  test("an order without a driver", async () => {
    const orderId = await placeOrder();
    const res = await h.call("GET", `/track/${orderId}`, undefined, { as: customer(customerId) });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      order_id: orderId,
      status: "created",
      restaurant: { id: restaurantId, name: "Pho Place", lat: expect.any(Number), lon: expect.any(Number) },
      delivery: { lat: expect.any(Number), lon: expect.any(Number) },
      driver: null,
      eta_seconds: null,
    });
    expect(res.body.restaurant.lat).toBeCloseTo(ORIGIN.lat, 9);
    expect(res.body.restaurant.lon).toBeCloseTo(ORIGIN.lon, 9);
    expect(res.body.delivery.lat).toBeCloseTo(delivery.lat, 9);
    expect(res.body.delivery.lon).toBeCloseTo(delivery.lon, 9);
  });

  test("an assigned order shows its driver, then the driver's new position and an ETA", async () => {
    const start = offset(ORIGIN, 0, 500);
    const driverId = await seedDriver(h.sql, { name: "Lin", at: start, positionAgeSeconds: 5 });
    const orderId = await placeOrder();
    await orderParties(h).act(orderId, "confirm");

    const assigned = await h.call("GET", `/track/${orderId}`, undefined, { as: customer(customerId) });
    expect(assigned.body.status).toBe("assigned");
    expect(assigned.body.driver).toEqual({
      id: driverId,
      name: "Lin",
      lat: start.lat,
      lon: start.lon,
      h3: cellToHex(cellOf(start.lat, start.lon, config().h3Resolution)),
      state: "assigned",
      updated_at: expect.any(String),
      position_age_seconds: expect.any(Number),
    });
    expect(assigned.body.driver.position_age_seconds).toBeGreaterThanOrEqual(5);
    expect(assigned.body.driver.position_age_seconds).toBeLessThan(60);
    expect(assigned.body.driver.h3).toMatch(/^[0-9a-f]{15}$/);

    const moved = offset(ORIGIN, 0, 250);
    const recordedAt = new Date(Date.now() - 1000);
    await applyPositions(h.sql, [{ driverId, ...moved, recordedAt, speedKmh: 18 }]);
    const res = await h.call("GET", `/track/${orderId}`, undefined, { as: customer(customerId) });
    expect(res.body.driver).toMatchObject({
      lat: moved.lat,
      lon: moved.lon,
      h3: cellToHex(cellOf(moved.lat, moved.lon, config().h3Resolution)),
      state: "assigned",
      updated_at: recordedAt.toISOString(),
    });
    expect(res.body.driver.position_age_seconds).toBeGreaterThanOrEqual(1);
    // 250 m to the restaurant + 1200 m to the customer, × 1.3 detour, at 5 m/s: about 377 s.
    expect(res.body.eta_seconds).toBeGreaterThan(300);
    expect(res.body.eta_seconds).toBeLessThan(450);
  });

  test("after delivery the customer no longer sees the driver", async () => {
    const driverId = await seedDriver(h.sql, { at: offset(ORIGIN, 0, 100) });
    const orderId = await placeOrder();
    await orderParties(h).act(orderId, "confirm");
    await applyPositions(h.sql, [{ driverId, ...ORIGIN }]);
    await orderParties(h).act(orderId, "pickup");
    await applyPositions(h.sql, [{ driverId, ...delivery }]);
    expect((await orderParties(h).act(orderId, "deliver")).body.status).toBe("delivered");
    const res = await h.call("GET", `/track/${orderId}`, undefined, { as: customer(customerId) });
    expect(res.body).toMatchObject({ status: "delivered", driver: null, eta_seconds: null });
  });

  test("404 for an unknown order, 400 INVALID_ID for a non-UUID", async () => {
    const unknown = await h.call("GET", "/track/6c1f3a2e-9d4b-4e8a-a1c2-0b9e8d7f6a5c", undefined, {
      as: customer(customerId),
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({
      error: { code: "NOT_FOUND", message: "order 6c1f3a2e-9d4b-4e8a-a1c2-0b9e8d7f6a5c does not exist" },
    });
    for (const bad of ["42", "not-a-uuid", "6c1f3a2e-9d4b-4e8a-a1c2-0b9e8d7f6a5", "%27%3B%20drop%20table"]) {
      const res = await h.call("GET", `/track/${bad}`, undefined, { as: customer(customerId) });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("INVALID_ID");
    }
  });
});
