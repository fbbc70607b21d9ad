// The HTTP client of the mocked app against a stub server speaking the documented contract.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { ApiError, createApiClient, readDriverState, readOrder } from "../../sim/api-client.ts";

const requests: { method: string; path: string; body: unknown }[] = [];
const authorizations: (string | null)[] = [];
/** Tokens that say whose they are, so the test sees who each call was made as. */
const identities = { tokenFor: async (role: string, sub: string) => `${role}:${sub}` };
let server: ReturnType<typeof Bun.serve>;

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const text = await req.text();
      requests.push({ method: req.method, path, body: text ? JSON.parse(text) : undefined });
      authorizations.push(req.headers.get("authorization"));
      if (path === "/orders") return Response.json({ id: "o1", status: "created", driver_id: null }, { status: 201 });
      if (path === "/orders/o1/confirm") return Response.json({ order: { id: "o1", status: "assigned", driver: { id: "d9" } } });
      if (path === "/orders/o1/pickup") {
        return Response.json({ error: { code: "TRANSITION_REFUSED", message: "order o1 cannot go from assigned to picked_up" } }, { status: 409 });
      }
      if (path === "/drivers/d9/mqtt-credentials" && req.method === "POST") {
        return Response.json({ username: "d9", password: "pw", client_id: "d9", mqtt_url: "mqtt://127.0.0.1:1883" });
      }
      if (path === "/drivers/d9/mqtt-credentials") return new Response(null, { status: 204 });
      if (path === "/drivers/d9") return Response.json({ driver_id: "d9", state: "at_restaurant", lat: 40.7, lon: -73.9 });
      return new Response("gateway exploded", { status: 502 });
    },
  });
});

afterAll(() => {
  server?.stop(true);
});

test("speaks the contract: order bodies out, orders and driver states in, error codes from the JSON error", async () => {
  const api = createApiClient(`http://127.0.0.1:${server.port}/`, 10_000, identities);
  const placed = await api.placeOrder({
    customer_id: "c1", restaurant_id: "r1", delivery: { lat: 40.73, lon: -73.98 }, items: [{ name: "Fries", qty: 1, price_cents: 495 }],
  });
  expect(placed).toEqual({ id: "o1", status: "created", driverId: null });
  expect(requests[0]).toEqual({
    method: "POST",
    path: "/orders",
    body: { customer_id: "c1", restaurant_id: "r1", delivery: { lat: 40.73, lon: -73.98 }, items: [{ name: "Fries", qty: 1, price_cents: 495 }] },
  });
  expect(await api.orderEvent("o1", "confirm", { role: "restaurant", id: "r1" })).toEqual({ id: "o1", status: "assigned", driverId: "d9" });
  expect(await api.driverState("d9")).toBe("at_restaurant");

  const refused = await api.orderEvent("o1", "pickup", { role: "driver", id: "d9" }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(ApiError);
  expect(refused).toMatchObject({ status: 409, code: "TRANSITION_REFUSED" });
  expect((refused as Error).message).toContain("cannot go from assigned");

  const broken = await api.orderEvent("o2", "deliver", { role: "driver", id: "d9" }).catch((e: unknown) => e);
  expect(broken).toMatchObject({ status: 502, code: "HTTP_502" });
  // Each call as the person making it: the customer orders, the restaurant confirms, the driver reads itself.
  expect(authorizations.slice(0, 4)).toEqual([
    "Bearer customer:c1",
    "Bearer restaurant:r1",
    "Bearer driver:d9",
    "Bearer driver:d9",
  ]);
});

test("a driver signs in to MQTT and off again as itself", async () => {
  const api = createApiClient(`http://127.0.0.1:${server.port}`, 10_000, identities);
  const from = requests.length;
  expect(await api.mqttSignIn("d9")).toEqual({ username: "d9", password: "pw", client_id: "d9", mqtt_url: "mqtt://127.0.0.1:1883" });
  await api.mqttSignOff("d9");
  expect(requests.slice(from).map((r) => `${r.method} ${r.path}`)).toEqual([
    "POST /drivers/d9/mqtt-credentials",
    "DELETE /drivers/d9/mqtt-credentials",
  ]);
  expect(authorizations.slice(from)).toEqual(["Bearer driver:d9", "Bearer driver:d9"]);
});

test("an API that is not there is an UNREACHABLE error, not a crash", async () => {
  const api = createApiClient("http://127.0.0.1:9", 2_000);
  await expect(api.driverState("d1")).rejects.toMatchObject({ code: "UNREACHABLE", status: 0 });
});

test("reads the order and driver leniently", () => {
  expect(readOrder({ id: "o", status: "assigned", driver_id: "d" })).toEqual({ id: "o", status: "assigned", driverId: "d" });
  expect(readOrder({ order: { id: "o" }, driver: { id: "d" } })).toEqual({ id: "o", status: undefined, driverId: "d" });
  expect(readOrder({ id: "o", driver: null })).toEqual({ id: "o", status: undefined, driverId: null });
  expect(() => readOrder({ error: "x" })).toThrow("no order");
  expect(readDriverState({ state: "arriving" })).toBe("arriving");
  expect(readDriverState({ driver: { status: "available" } })).toBe("available");
  expect(readDriverState("nope")).toBeUndefined();
});
