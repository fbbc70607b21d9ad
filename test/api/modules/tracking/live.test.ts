import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { applyPositions } from "../../../support/positions.ts";
import { customer } from "../../support/auth.ts";
import { type Harness, startHarness } from "../../support/harness.ts";
import { orderParties } from "../../support/orders.ts";
import { allowTeleports, ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "../../support/seed.ts";
import { sseReader } from "../../support/sse.ts";
import { waitFor } from "../../support/wait.ts";

const HEARTBEAT_MS = 200;
let h: Harness;
let customerId: string;
let restaurantId: string;
const delivery = offset(ORIGIN, 900, 0);

beforeAll(async () => {
  h = await startHarness("api_live", { heartbeatMs: HEARTBEAT_MS });
  await allowTeleports(h.sql);
  customerId = await seedCustomer(h.sql);
  restaurantId = await seedRestaurant(h.sql);
});
afterAll(() => h.close());

/** An order assigned to a driver of its own, `metres` east of the restaurant. */
async function assignedOrder(metres = 300) {
  const driverId = await seedDriver(h.sql, { at: offset(ORIGIN, 0, metres) });
  const created = await h.call(
    "POST",
    "/orders",
    {
      customer_id: customerId,
      restaurant_id: restaurantId,
      delivery,
      items: [{ name: "Soup", qty: 1, price_cents: 900 }],
    },
    { as: customer(customerId) },
  );
  const confirmed = await orderParties(h).act(created.body.id, "confirm");
  expect(confirmed.body.driver.id).toBe(driverId);
  return { orderId: created.body.id as string, driverId };
}

const openLive = async (orderId: string) => {
  const res = await h.fetch("GET", `/track/${orderId}/live`, { as: customer(customerId) });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/event-stream");
  return sseReader(res);
};

describe("GET /track/{order_id}/live", () => {
  test("the snapshot first, then each position, each status change, and the end", async () => {
    const { orderId, driverId } = await assignedOrder();
    const before = h.feed.subscribers;
    const live = await openLive(orderId);
    expect((await live.next())?.retry).toBe(3000);
    expect(h.feed.subscribers).toBe(before + 1);

    const first = await live.nextEvent();
    expect(first?.event).toBe("track");
    const track = (await h.call("GET", `/track/${orderId}`, undefined, { as: customer(customerId) })).body;
    expect(first?.data).toEqual({ ...track, driver: { ...track.driver, position_age_seconds: expect.any(Number) } });

    const near = offset(ORIGIN, 0, 150);
    await applyPositions(h.sql, [{ driverId, ...near, speedKmh: 15 }]);
    const moved = await live.nextEvent();
    expect(moved?.event).toBe("position");
    expect(moved?.data).toMatchObject({
      order_id: orderId,
      status: "assigned",
      driver_id: driverId,
      driver_state: "assigned",
      lat: near.lat,
      lon: near.lon,
    });
    expect(moved?.data.eta_seconds).toBeGreaterThan(0);

    await applyPositions(h.sql, [{ driverId, ...ORIGIN }]);
    expect(await live.nextEvent()).toMatchObject({ event: "position", data: { driver_state: "at_restaurant" } });

    await orderParties(h).act(orderId, "pickup");
    const pickedUp = await live.nextEvent();
    expect(pickedUp?.event).toBe("track");
    expect(pickedUp?.data).toMatchObject({ status: "picked_up", driver: { id: driverId, state: "delivering" } });

    await applyPositions(h.sql, [{ driverId, ...delivery }]);
    expect(await live.nextEvent()).toMatchObject({ event: "position", data: { driver_state: "arriving" } });

    await orderParties(h).act(orderId, "deliver");
    expect(await live.nextEvent()).toMatchObject({ event: "track", data: { status: "delivered", driver: null } });
    expect(await live.nextEvent()).toEqual({ event: "end", data: { order_id: orderId, status: "delivered" } });
    expect(await live.next()).toBeUndefined(); // the server closed the stream
    expect(h.feed.subscribers).toBe(before);
  });

  test("a quiet stream carries heartbeats", async () => {
    const { orderId } = await assignedOrder();
    const live = await openLive(orderId);
    await live.nextEvent(); // the snapshot
    const started = Date.now();
    const block = await live.next(HEARTBEAT_MS * 10);
    expect(block).toEqual({ comments: ["heartbeat"] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(HEARTBEAT_MS / 2);
    await live.cancel();
  });

  test("a client that goes away is unsubscribed", async () => {
    const { orderId, driverId } = await assignedOrder();
    const before = h.feed.subscribers;
    const live = await openLive(orderId);
    await live.nextEvent();
    expect(h.feed.subscribers).toBe(before + 1);
    await live.cancel();
    expect(h.feed.subscribers).toBe(before);
    // Nothing breaks when the order moves with nobody listening.
    await applyPositions(h.sql, [{ driverId, ...offset(ORIGIN, 0, 120) }]);
  });

  test("over a real socket too: aborting the request unsubscribes", async () => {
    const { orderId, driverId } = await assignedOrder();
    const before = h.feed.subscribers;
    const server = h.app.listen({ port: 0, hostname: "127.0.0.1" });
    try {
      const abort = new AbortController();
      // As a browser's EventSource would: no headers, the token in the query.
      const token = await h.tokenFor(customer(customerId));
      const url = `http://127.0.0.1:${server.server!.port}/track/${orderId}/live?token=${token}`;
      const res = await fetch(url, { signal: abort.signal });
      const live = sseReader(res);
      expect((await live.nextEvent())?.event).toBe("track");
      await applyPositions(h.sql, [{ driverId, ...offset(ORIGIN, 0, 200) }]);
      expect((await live.nextEvent())?.event).toBe("position");
      expect(h.feed.subscribers).toBe(before + 1);
      abort.abort();
      await waitFor("the server to notice the client left", () => h.feed.subscribers === before, 10_000);
    } finally {
      await h.app.stop(true);
    }
  });

  test("stale positions are not sent after a newer snapshot", async () => {
    const { orderId, driverId } = await assignedOrder();
    const live = await openLive(orderId);
    const first = await live.nextEvent();
    const snapshotAt = Date.parse(first?.data.driver.updated_at);
    // A late position (older than the snapshot) is refused by the database too; a newer one goes through.
    const late = await applyPositions(h.sql, [{ driverId, ...ORIGIN, recordedAt: new Date(snapshotAt - 1000) }]);
    expect(late.out_of_order).toBe(1);
    const fresh = offset(ORIGIN, 0, 50);
    await applyPositions(h.sql, [{ driverId, ...fresh }]);
    expect(await live.nextEvent()).toMatchObject({ event: "position", data: { lat: fresh.lat, lon: fresh.lon } });
    await live.cancel();
  });

  test("404 for an unknown order and 400 for a non-UUID, before any stream starts", async () => {
    const before = h.feed.subscribers;
    const asCustomer = { as: customer(customerId) };
    const unknown = await h.call("GET", "/track/9b2d1f3c-1a2b-4c3d-8e4f-5a6b7c8d9e0f/live", undefined, asCustomer);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("NOT_FOUND");
    const bad = await h.call("GET", "/track/nope/live", undefined, asCustomer);
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("INVALID_ID");
    expect(h.feed.subscribers).toBe(before);
  });

  test("a finished order's stream sends the snapshot and ends", async () => {
    const { orderId } = await assignedOrder();
    await orderParties(h).act(orderId, "cancel");
    const live = await openLive(orderId);
    expect(await live.nextEvent()).toMatchObject({ event: "track", data: { status: "cancelled" } });
    expect(await live.nextEvent()).toMatchObject({ event: "end", data: { status: "cancelled" } });
    expect(await live.next()).toBeUndefined();
  });
});
