// The order stories against an in-memory API and fleet that follow the HTTP contract of DESIGN.md.
import { describe, expect, test } from "bun:test";
import { ApiError, type OrderEvent, type PlaceOrder } from "../../sim/api-client.ts";
import { cityByName, type LatLon } from "../../lib/cities.ts";
import { distanceM } from "../../sim/movement.ts";
import { createRng } from "../../lib/random.ts";
import { chooseRestaurant, startOrderFlow, type DispatchableFleet, type OrderFlowOptions, type Place } from "../../sim/order-flow.ts";

const city = cityByName("nyc");
const customers: Place[] = [{ id: "c1", lat: 40.7306, lon: -73.9866 }];
const restaurants: Place[] = [{ id: "r1", lat: 40.7265, lon: -73.9815 }];

type Call = [string, ...unknown[]];

/** An API whose drivers reach the state the flow waits for once the fleet has driven them to the restaurant/door. */
function fakeWorld(opts: { assign?: () => string | null; refuse?: OrderEvent; fleetDrivers?: string[]; stuck?: boolean } = {}) {
  const calls: Call[] = [];
  const arrivedAt = new Map<string, LatLon>();
  let next = 0;
  const api: OrderFlowOptions["api"] = {
    async placeOrder(order: PlaceOrder) {
      calls.push(["place", order]);
      return { id: `o${++next}`, status: "created", driverId: null };
    },
    async orderEvent(orderId, event) {
      calls.push([event, orderId]);
      if (event === opts.refuse) throw new ApiError(409, "TRANSITION_REFUSED", `order ${orderId} cannot ${event}`);
      const driverId = event === "confirm" || event === "assign" ? (opts.assign ? opts.assign() : "d1") : "d1";
      return { id: orderId, status: event, driverId };
    },
    async driverState(driverId) {
      calls.push(["state", driverId]);
      const at = arrivedAt.get(driverId);
      if (opts.stuck || !at) return "assigned";
      return distanceM(at, restaurants[0]!) < 1 ? "at_restaurant" : "arriving";
    },
  };
  const members = new Set(opts.fleetDrivers ?? ["d1"]);
  const fleet: DispatchableFleet = {
    has: (id) => members.has(id),
    driveTo(id, target, signal) {
      calls.push(["driveTo", id, target]);
      if (opts.stuck) {
        // Never arrives: only the flow's stop ends this.
        return new Promise((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason)));
      }
      arrivedAt.set(id, target);
      return Promise.resolve();
    },
    release: (id) => void calls.push(["release", id]),
  };
  return { api, fleet, calls };
}

function flow(world: ReturnType<typeof fakeWorld>, extra: Partial<OrderFlowOptions> = {}) {
  const lines: string[] = [];
  const orders = startOrderFlow({
    api: world.api, fleet: world.fleet, city, customers, restaurants, ordersPerMin: 0, maxDeliveryKm: 15, seed: 1,
    statePollMs: 5, stateTimeoutMs: 200, assignRetries: 0, log: (l) => lines.push(l), ...extra,
  });
  return { orders, lines };
}

const kinds = (calls: Call[]) => calls.map((c) => c[0]).filter((k) => k !== "state");

describe("order flow", () => {
  test("walks an order from placement to delivery, driving to the restaurant and then the door", async () => {
    const world = fakeWorld();
    const { orders } = flow(world);
    await orders.placeOrder();
    expect(kinds(world.calls)).toEqual(["place", "confirm", "driveTo", "pickup", "driveTo", "deliver", "release"]);
    const [, placed] = world.calls[0] as [string, PlaceOrder];
    expect(placed.customer_id).toBe("c1");
    expect(placed.restaurant_id).toBe("r1");
    expect(distanceM(placed.delivery, customers[0]!)).toBeLessThan(150);
    expect(placed.items.length).toBeGreaterThanOrEqual(1);
    expect(placed.items.length).toBeLessThanOrEqual(4);
    const drives = world.calls.filter((c) => c[0] === "driveTo").map((c) => c[2]);
    expect(drives).toEqual([restaurants[0], placed.delivery]);
    // Pickup only after the state said at_restaurant, delivery only after it said arriving.
    const pickupIndex = world.calls.findIndex((c) => c[0] === "pickup");
    expect(world.calls[pickupIndex - 1]).toEqual(["state", "d1"]);
    expect(orders.stats()).toMatchObject({ placed: 1, assigned: 1, pickedUp: 1, delivered: 1, active: 0, failed: 0 });
    await orders.stop();
  });

  test("no available driver (409 NO_DRIVER_AVAILABLE or driver null) cancels the order", async () => {
    for (const assign of [() => null, () => { throw new ApiError(409, "NO_DRIVER_AVAILABLE", "none near"); }]) {
      const world = fakeWorld({ assign });
      const { orders, lines } = flow(world);
      await orders.placeOrder();
      expect(kinds(world.calls)).toEqual(["place", "confirm", "cancel"]);
      expect(orders.stats()).toMatchObject({ placed: 1, noDriver: 1, cancelled: 1, refused: 0, failed: 0 });
      expect(lines.join("\n")).toContain("no driver available");
      await orders.stop();
    }
  });

  test("a confirmed order without a driver asks again with /assign before giving up", async () => {
    const answers = [null, null, "d1"];
    const world = fakeWorld({ assign: () => answers.shift() ?? null });
    const { orders } = flow(world, { assignRetries: 2, assignRetryMs: 5 });
    await orders.placeOrder();
    expect(kinds(world.calls)).toEqual(["place", "confirm", "assign", "assign", "driveTo", "pickup", "driveTo", "deliver", "release"]);
    expect(orders.stats()).toMatchObject({ noDriver: 0, delivered: 1 });
    await orders.stop();
  });

  test("a refused transition is logged, the order cancelled, the driver released, and the flow goes on", async () => {
    const world = fakeWorld({ refuse: "pickup" });
    const { orders, lines } = flow(world);
    await orders.placeOrder();
    expect(kinds(world.calls)).toEqual(["place", "confirm", "driveTo", "pickup", "cancel", "release"]);
    expect(orders.stats()).toMatchObject({ refused: 1, cancelled: 1, delivered: 0 });
    expect(lines.some((l) => l.includes("refused (TRANSITION_REFUSED)"))).toBe(true);
    await orders.placeOrder();
    expect(orders.stats()).toMatchObject({ placed: 2, refused: 2 });
    await orders.stop();
  });

  test("a driver outside this fleet is not driven; the order is cancelled", async () => {
    const world = fakeWorld({ assign: () => "stranger" });
    const { orders } = flow(world);
    await orders.placeOrder();
    expect(kinds(world.calls)).toEqual(["place", "confirm", "cancel"]);
    expect(orders.stats()).toMatchObject({ assigned: 0, cancelled: 1 });
    await orders.stop();
  });

  test("gives up when the pipeline never reports the arrival", async () => {
    const world = fakeWorld();
    world.api.driverState = async () => "assigned";
    const { orders, lines } = flow(world, { stateTimeoutMs: 50 });
    await orders.placeOrder();
    expect(kinds(world.calls)).toEqual(["place", "confirm", "driveTo", "cancel", "release"]);
    expect(orders.stats()).toMatchObject({ failed: 1, cancelled: 1 });
    expect(lines.join("\n")).toContain("not at_restaurant");
    await orders.stop();
  });

  test("stop ends the stories in progress and cancels what is not picked up", async () => {
    const world = fakeWorld({ stuck: true });
    const { orders } = flow(world);
    const story = orders.placeOrder();
    await Bun.sleep(20);
    expect(orders.stats().active).toBe(1);
    await orders.stop();
    await story;
    expect(kinds(world.calls)).toEqual(["place", "confirm", "driveTo", "cancel", "release"]);
    expect(orders.stats()).toMatchObject({ active: 0, failed: 0, refused: 0 });
  });

  test("places orders at the configured rate", async () => {
    const world = fakeWorld();
    const { orders } = flow(world, { ordersPerMin: 1_200 }); // 20 a second
    await Bun.sleep(1_050);
    await orders.stop();
    expect(orders.stats().placed).toBeGreaterThanOrEqual(18);
    expect(orders.stats().placed).toBeLessThanOrEqual(22);
  });
});

test("a driver re-assigned before the previous order's story ended keeps its new dispatch", async () => {
  const calls: Call[] = [];
  let next = 0;
  let releaseFirst: () => void = () => {};
  const firstDelivered = new Promise<void>((resolve) => (releaseFirst = resolve));
  let arrivedAt: LatLon | undefined;
  const api: OrderFlowOptions["api"] = {
    placeOrder: async () => ({ id: `o${++next}`, status: "created", driverId: null }),
    async orderEvent(orderId, event) {
      calls.push([event, orderId]);
      // The first order's deliver answer comes late: by then the second order has been given the same driver.
      if (event === "deliver" && orderId === "o1") await firstDelivered;
      return { id: orderId, status: event, driverId: "d1" };
    },
    driverState: async () => (arrivedAt && distanceM(arrivedAt, restaurants[0]!) < 1 ? "at_restaurant" : "arriving"),
  };
  const fleet: DispatchableFleet = {
    has: () => true,
    driveTo: async (id, target) => {
      calls.push(["driveTo", id, target]);
      arrivedAt = target;
    },
    release: (id) => void calls.push(["release", id]),
  };
  const orders = startOrderFlow({ api, fleet, city, customers, restaurants, ordersPerMin: 0, maxDeliveryKm: 15, seed: 1, statePollMs: 5, log: () => {} });
  const first = orders.placeOrder();
  await Bun.sleep(30);
  const second = orders.placeOrder();
  await Bun.sleep(30);
  releaseFirst();
  await Promise.all([first, second]);
  // Only the second story, which holds d1 last, releases it.
  expect(calls.filter((c) => c[0] === "release")).toHaveLength(1);
  expect(orders.stats()).toMatchObject({ delivered: 2, failed: 0 });
  await orders.stop();
});

describe("the restaurant a customer orders from", () => {
  const home = { lat: 40.7306, lon: -73.9866 };
  const near = { id: "near", lat: 40.7265, lon: -73.9815 }; // ~0.6 km
  const across = { id: "across", lat: 40.80, lon: -73.95 }; // ~8 km
  const far = { id: "far", lat: 40.95, lon: -73.70 }; // ~34 km: past the 15 km the API delivers

  test("only restaurants that deliver to the point, the nearest of a few random ones", () => {
    const rng = createRng(7, "test");
    const picks = new Set(Array.from({ length: 200 }, () => chooseRestaurant(rng, home, [far, across, near, far, far], 15).id));
    expect(picks.has("far")).toBe(false);
    expect(picks.has("near")).toBe(true);
  });

  test("with none in reach, the nearest of all (the API then refuses it with ORDER_LIMIT)", () => {
    expect(chooseRestaurant(createRng(1, "test"), home, [far, across], 1).id).toBe("across");
  });

  test("with no restaurants at all, a clear error", () => {
    expect(() => chooseRestaurant(createRng(1, "test"), home, [], 15)).toThrow("no restaurants");
  });
});
