/**
 * A live stream's event ids and what a reconnecting client gets (issue #15): every `track` and `position` carries an
 * id (status and position time), and a client that comes back with Last-Event-ID gets the current state at once,
 * including whatever it missed while away, under an id newer than the one it sent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { applyPositions } from "../support/positions.ts";
import { customer } from "./support/auth.ts";
import { type Harness, startHarness } from "./support/harness.ts";
import { orderParties } from "./support/orders.ts";
import { allowTeleports, ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "./support/seed.ts";

let h: Harness;
let customerId: string;
let restaurantId: string;

beforeAll(async () => {
  h = await startHarness("api_live_resume");
  await allowTeleports(h.sql);
  customerId = await seedCustomer(h.sql);
  restaurantId = await seedRestaurant(h.sql);
});
afterAll(() => h.close());

interface Event {
  id?: string;
  event: string;
  data: any;
}

/** The named events of an SSE response with their ids (heartbeats and the retry hint skipped). */
function events(response: Response) {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  return {
    async next(): Promise<Event> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const field = (name: string) =>
            block.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
          const event = field("event");
          if (event !== undefined) return { id: field("id"), event, data: JSON.parse(field("data") ?? "null") };
          continue;
        }
        const chunk = await reader.read();
        if (chunk.done) throw new Error("the stream ended");
        buffer += decoder.decode(chunk.value, { stream: true });
      }
    },
    cancel: () => reader.cancel(),
  };
}

const positionMs = (id: string | undefined) => Number(id?.split(".")[1]);

async function openLive(orderId: string, lastEventId?: string) {
  const res = await h.fetch("GET", `/track/${orderId}/live`, {
    as: customer(customerId),
    headers: lastEventId ? { "last-event-id": lastEventId } : {},
  });
  expect(res.status).toBe(200);
  return events(res);
}

describe("GET /track/{order_id}/live: event ids and Last-Event-ID", () => {
  test("every state event has an id; a client back after missing a move and a status change gets both at once", async () => {
    const driverId = await seedDriver(h.sql, { at: offset(ORIGIN, 0, 300) });
    const placed = await orderParties(h).place({ customerId, restaurantId, delivery: offset(ORIGIN, 900, 0) });
    const orderId = placed.body.id as string;
    expect((await orderParties(h).act(orderId, "confirm")).body.driver.id).toBe(driverId);

    const first = await openLive(orderId);
    const snapshot = await first.next();
    expect(snapshot.event).toBe("track");
    expect(snapshot.id).toMatch(/^assigned\.\d+$/);

    await applyPositions(h.sql, [{ driverId, ...offset(ORIGIN, 0, 200) }]);
    const moved = await first.next();
    expect(moved.event).toBe("position");
    expect(moved.id).toMatch(/^assigned\.\d+$/);
    expect(positionMs(moved.id)).toBeGreaterThan(positionMs(snapshot.id));
    await first.cancel();

    // While the client is away: the driver reaches the restaurant, moves on, and the order is picked up.
    await applyPositions(h.sql, [{ driverId, ...ORIGIN }]);
    await orderParties(h).act(orderId, "pickup");
    const missed = offset(ORIGIN, 100, 0);
    await applyPositions(h.sql, [{ driverId, ...missed }]);

    const resumed = await openLive(orderId, moved.id);
    const current = await resumed.next();
    expect(current.event).toBe("track"); // the first thing sent: the whole current state
    expect(current.data).toMatchObject({ status: "picked_up", driver: { id: driverId, lat: missed.lat, lon: missed.lon } });
    expect(current.id).toMatch(/^picked_up\.\d+$/);
    expect(positionMs(current.id)).toBeGreaterThan(positionMs(moved.id));
    expect(positionMs(current.id)).toBe(Date.parse(current.data.driver.updated_at));

    // And it goes on live from there.
    await applyPositions(h.sql, [{ driverId, ...offset(ORIGIN, 200, 0) }]);
    const next = await resumed.next();
    expect(next).toMatchObject({ event: "position", data: { order_id: orderId, status: "picked_up" } });
    expect(positionMs(next.id)).toBeGreaterThan(positionMs(current.id));
    await resumed.cancel();
  });
});
