/**
 * The mocked mobile apps around an order: a customer places it, the restaurant confirms (the API assigns the nearest
 * available driver), the driver's phone heads to the restaurant, picks up once the tracking pipeline has seen it
 * arrive (driver state `at_restaurant`), drives to the door and hands over once the state says `arriving`.
 * Each order is one async story; a refusal (409) ends that story with a log line, never the simulator.
 */
import { type Actor, ApiError, type ApiClient, type OrderEvent } from "./api-client.ts";
import { pointNear, type City, type LatLon } from "../lib/cities.ts";
import { orderItems } from "../lib/names.ts";
import { haversineM } from "../lib/position.ts";
import { createRng, type Rng } from "../lib/random.ts";

export interface Place extends LatLon {
  id: string;
}

/** What the order flow needs of the fleet (sim/simulated-fleet.ts provides it). */
export interface DispatchableFleet {
  has(driverId: string): boolean;
  driveTo(driverId: string, target: LatLon, signal?: AbortSignal): Promise<void>;
  release(driverId: string): void;
}

export interface OrderFlowOptions {
  api: Pick<ApiClient, "placeOrder" | "orderEvent" | "driverState">;
  fleet: DispatchableFleet;
  city: City;
  customers: readonly Place[];
  restaurants: readonly Place[];
  ordersPerMin: number;
  /** The API's ORDER_MAX_DELIVERY_KM: the app offers a customer only restaurants that deliver that far. */
  maxDeliveryKm: number;
  seed?: number;
  /** How often a waiting driver's state is read. */
  statePollMs?: number;
  /** How long the pipeline may take to notice an arrival before the order is given up. */
  stateTimeoutMs?: number;
  /** A confirmed order without a driver asks again (POST /orders/{id}/assign) this often before it is cancelled. */
  assignRetries?: number;
  assignRetryMs?: number;
  log?: (line: string) => void;
}

export interface OrderFlowStats {
  placed: number;
  assigned: number;
  noDriver: number;
  pickedUp: number;
  delivered: number;
  cancelled: number;
  /** Transitions the API refused (409). */
  refused: number;
  failed: number;
  active: number;
}

export interface OrderFlow {
  stats(): OrderFlowStats;
  /** Places one order now and resolves when its story ends (the timer places the others). */
  placeOrder(): Promise<void>;
  /** Ends every order story in progress (cancelling what can still be cancelled). */
  stop(): Promise<void>;
}

class StateTimeout extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** At most `perWindow` lines per window, so an API that is down yields a few lines, not one per order. */
function throttled(log: (line: string) => void, perWindow = 10, windowMs = 5_000): (line: string) => void {
  let windowStart = 0;
  let lines = 0;
  let suppressed = 0;
  return (line) => {
    const now = Date.now();
    if (now - windowStart > windowMs) {
      if (suppressed > 0) log(`[orders] ${suppressed} more messages suppressed`);
      windowStart = now;
      lines = 0;
      suppressed = 0;
    }
    if (lines++ < perWindow) log(line);
    else suppressed++;
  };
}

/**
 * The restaurant a customer orders from: people order from nearby places, so the nearest of a few random restaurants
 * among those that deliver to the point (within maxDeliveryKm, as the API checks). With none in reach, the nearest of
 * all: the API refuses it (ORDER_LIMIT), as it would a real app's stale list.
 */
export function chooseRestaurant(rng: Rng, delivery: LatLon, restaurants: readonly Place[], maxDeliveryKm: number): Place {
  if (restaurants.length === 0) throw new Error("no restaurants to order from");
  const metres = (p: Place) => haversineM(p.lat, p.lon, delivery.lat, delivery.lon);
  const inReach = restaurants.filter((r) => metres(r) <= maxDeliveryKm * 1000);
  const nearest = (candidates: readonly Place[]) => candidates.reduce((a, b) => (metres(b) < metres(a) ? b : a));
  if (inReach.length === 0) return nearest(restaurants);
  return nearest(Array.from({ length: 4 }, () => rng.pick(inReach)));
}

export function startOrderFlow(options: OrderFlowOptions): OrderFlow {
  const { api, fleet, city } = options;
  if (options.customers.length === 0 || options.restaurants.length === 0) {
    throw new Error("the order flow needs customers and restaurants (run `bun run generate` first)");
  }
  const rng: Rng = createRng(options.seed ?? Math.floor(Math.random() * 2 ** 31), "orders");
  const pollMs = options.statePollMs ?? 1_000;
  const stateTimeoutMs = options.stateTimeoutMs ?? 90_000;
  const assignRetries = options.assignRetries ?? 2;
  const assignRetryMs = options.assignRetryMs ?? 5_000;
  const log = throttled(options.log ?? ((line) => console.log(line)));
  const abort = new AbortController();
  const counts: Omit<OrderFlowStats, "active"> = {
    placed: 0, assigned: 0, noDriver: 0, pickedUp: 0, delivered: 0, cancelled: 0, refused: 0, failed: 0,
  };
  const active = new Set<Promise<void>>();
  // Which order holds each dispatched driver: a driver freed by a delivery can be given a new order before the old
  // story has released it, and that late release must not cancel the new dispatch.
  const holders = new Map<string, string>();

  async function waitForState(driverId: string, wanted: string): Promise<void> {
    const deadline = Date.now() + stateTimeoutMs;
    let seen: string | undefined;
    while (Date.now() < deadline) {
      seen = await api.driverState(driverId);
      if (seen === wanted) return;
      await sleep(pollMs, abort.signal);
    }
    throw new StateTimeout(`driver ${driverId} not ${wanted} after ${stateTimeoutMs / 1000} s (last ${seen})`);
  }

  /** The customer cancels (it may: rules in api/modules/orders/index.ts). */
  async function tryCancel(orderId: string, customerId: string): Promise<void> {
    try {
      await api.orderEvent(orderId, "cancel", { role: "customer", id: customerId });
      counts.cancelled++;
    } catch {
      // Too late to cancel (picked up) or the API is gone: nothing more this story can do.
    }
  }

  async function step(orderId: string, event: OrderEvent, actor: Actor) {
    return api.orderEvent(orderId, event, actor);
  }

  /** The driver confirm (or a later assign) gave the order; null when nobody was free each time. */
  async function findDriver(orderId: string, restaurantId: string): Promise<string | null> {
    const restaurant: Actor = { role: "restaurant", id: restaurantId };
    for (let attempt = 0; attempt <= assignRetries; attempt++) {
      if (attempt > 0) await sleep(assignRetryMs, abort.signal);
      try {
        const driverId = (await step(orderId, attempt === 0 ? "confirm" : "assign", restaurant)).driverId;
        if (driverId !== null) return driverId;
      } catch (error) {
        if (!(error instanceof ApiError && error.code === "NO_DRIVER_AVAILABLE")) throw error;
      }
    }
    return null;
  }

  async function runOrder(): Promise<void> {
    const customer = rng.pick(options.customers);
    const delivery = pointNear(city, rng, customer, 20);
    const restaurant = chooseRestaurant(rng, delivery, options.restaurants, options.maxDeliveryKm);
    const items = orderItems(rng);

    let orderId: string | undefined;
    let driverId: string | null = null;
    let pickedUp = false;
    try {
      const placed = await api.placeOrder({
        customer_id: customer.id,
        restaurant_id: restaurant.id,
        delivery: { lat: delivery.lat, lon: delivery.lon },
        items,
      });
      orderId = placed.id;
      counts.placed++;
      driverId = await findDriver(orderId, restaurant.id);
      if (driverId === null) {
        counts.noDriver++;
        log(`[orders] ${orderId}: no driver available, cancelling`);
        await tryCancel(orderId, customer.id);
        return;
      }
      if (!fleet.has(driverId)) {
        log(`[orders] ${orderId}: assigned to ${driverId}, who is not in this fleet; cancelling`);
        driverId = null;
        await tryCancel(orderId, customer.id);
        return;
      }
      counts.assigned++;
      holders.set(driverId, orderId);
      await fleet.driveTo(driverId, restaurant, abort.signal);
      await waitForState(driverId, "at_restaurant");
      await step(orderId, "pickup", { role: "driver", id: driverId });
      pickedUp = true;
      counts.pickedUp++;
      await fleet.driveTo(driverId, delivery, abort.signal);
      await waitForState(driverId, "arriving");
      await step(orderId, "deliver", { role: "driver", id: driverId });
      counts.delivered++;
    } catch (error) {
      if (abort.signal.aborted) {
        if (orderId && !pickedUp) await tryCancel(orderId, customer.id);
        return;
      }
      const where = orderId ? `[orders] ${orderId}` : "[orders] new order";
      if (error instanceof ApiError && error.status === 409) {
        counts.refused++;
        log(`${where}: refused (${error.code}): ${error.message}`);
      } else {
        counts.failed++;
        log(`${where}: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (orderId && !pickedUp) await tryCancel(orderId, customer.id);
    } finally {
      if (driverId && orderId && holders.get(driverId) === orderId) {
        holders.delete(driverId);
        fleet.release(driverId);
      }
    }
  }

  function launch(): Promise<void> {
    const story = runOrder();
    active.add(story);
    void story.finally(() => active.delete(story));
    return story;
  }

  let due = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    due += (options.ordersPerMin / 60) * ((now - last) / 1000);
    last = now;
    for (; due >= 1; due--) void launch();
  }, 100);

  return {
    stats: () => ({ ...counts, active: active.size }),
    placeOrder: launch,
    async stop() {
      clearInterval(timer);
      abort.abort(new Error("order flow stopped"));
      await Promise.allSettled([...active]);
    },
  };
}
