/**
 * Every endpoint x every kind of caller -> status: deny by default, ownership next to the data, and the same answer
 * for another party's order as for an unknown one (404). Each row runs in a scene of its own (fresh parties and an
 * order assigned to its driver), because allowed writes change the order. A route missing from the table, or
 * declaring no rule, fails the enumeration test.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { assertEveryRouteHasARule, authPlugin, ruleOf } from "../../../api/auth/plugin.ts";
import { createTokenService } from "../../../api/auth/tokens.ts";
import type { MqttCredentialIssuer } from "../../../api/modules/drivers/credentials.ts";
import { type Caller, customer, driver, OPS, refusedTokens, restaurant, tracker } from "../support/auth.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { ORIGIN, offset, type Point, seedCustomer, seedDriver, seedRestaurant } from "../support/seed.ts";

/** A stand-in for the Mosquitto-backed issuer (tested by its owner): here only who may ask matters. */
const issued: string[] = [];
const revoked: string[] = [];
const fakeIssuer: MqttCredentialIssuer = {
  issue: async (driverId) => {
    issued.push(driverId);
    return { username: driverId, password: "pw", client_id: `driver-${driverId}` };
  },
  revoke: async (driverId) => {
    revoked.push(driverId);
  },
};

let h: Harness;
beforeAll(async () => {
  h = await startHarness("api_auth_rules", { mqttCredentials: fakeIssuer, mqttUrl: "mqtt://admin:secret@127.0.0.1:1883" });
});
afterAll(() => h.close());

const items = [{ name: "Rice", qty: 1, price_cents: 500 }];
let area = 0;

/** Two customers, two restaurants, two drivers; order `own` (customer A, restaurant A, assigned to driver A) and `other`. */
async function scene() {
  const at = offset(ORIGIN, 0, 30_000 * ++area); // far from every other scene, so drivers serve only their own
  const [customerA, customerB] = [await seedCustomer(h.sql, at), await seedCustomer(h.sql, at)];
  const atB = offset(at, 0, 2_000);
  const [restaurantA, restaurantB] = [await seedRestaurant(h.sql, at), await seedRestaurant(h.sql, atB)];
  const driverA = await seedDriver(h.sql, { at });
  const driverB = await seedDriver(h.sql, { state: "offline" });
  const place = async (customerId: string, restaurantId: string, near: Point) => {
    const res = await h.call(
      "POST",
      "/orders",
      { customer_id: customerId, restaurant_id: restaurantId, delivery: offset(near, 800, 0), items },
      { as: customer(customerId) },
    );
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const own = await place(customerA, restaurantA, at);
  const confirmed = await h.call("POST", `/orders/${own}/confirm`, undefined, { as: restaurant(restaurantA) });
  expect(confirmed.body.driver?.id).toBe(driverA);
  const other = await place(customerB, restaurantB, atB);
  return { at, customerA, customerB, restaurantA, restaurantB, driverA, driverB, own, other };
}
type Scene = Awaited<ReturnType<typeof scene>>;

const CALLERS = [
  "customer own",
  "customer other",
  "restaurant own",
  "restaurant other",
  "driver own",
  "driver other",
  "operations",
  "tracker this",
  "tracker other",
  "no token",
  "expired token",
  "other key",
  "not bearer",
] as const;
type CallerName = (typeof CALLERS)[number];

async function callerFor(name: CallerName, s: Scene): Promise<Caller | { header: string } | undefined> {
  switch (name) {
    case "customer own":
      return customer(s.customerA);
    case "customer other":
      return customer(s.customerB);
    case "restaurant own":
      return restaurant(s.restaurantA);
    case "restaurant other":
      return restaurant(s.restaurantB);
    case "driver own":
      return driver(s.driverA);
    case "driver other":
      return driver(s.driverB);
    case "operations":
      return OPS;
    case "tracker this":
      return tracker(s.own);
    case "tracker other":
      return tracker(s.other);
    case "no token":
      return undefined;
    case "expired token":
      return (await refusedTokens(h.auth, customer(s.customerA))).expired;
    case "other key":
      return (await refusedTokens(h.auth, customer(s.customerA))).foreignKey;
    case "not bearer":
      return { header: `Basic ${btoa("ada:secret")}` };
  }
}

interface Row {
  method: string;
  /** The route as Elysia lists it, and the concrete path for a scene. */
  route: string;
  path: (s: Scene) => string;
  body?: (s: Scene) => unknown;
  /** Statuses of the callers that get past authorisation (or are refused otherwise than 403); the rest: 403. */
  expect: Partial<Record<CallerName, number>>;
  open?: boolean;
}

const unauthenticated = { "no token": 401, "expired token": 401, "other key": 401, "not bearer": 401 } as const;
const position = () => JSON.stringify({ lat: 40.75, lon: -73.99, tst: Date.now() / 1000 });

const ROWS: Row[] = [
  { method: "GET", route: "/health", path: () => "/health", open: true, expect: {} },
  // Kafka is down in this harness: open, but not ready.
  { method: "GET", route: "/ready", path: () => "/ready", open: true, expect: {} },
  { method: "GET", route: "/openapi/json", path: () => "/openapi/json", open: true, expect: {} },
  { method: "GET", route: "/openapi", path: () => "/openapi", open: true, expect: {} },
  { method: "GET", route: "/metrics", path: () => "/metrics", expect: { operations: 200 } },
  // The pages and their bundled scripts are public static assets; every data route they call has its own rule.
  { method: "GET", route: "/ui/ops", path: () => "/ui/ops", open: true, expect: {} },
  { method: "GET", route: "/ui/track", path: () => "/ui/track", open: true, expect: {} },
  { method: "GET", route: "/ui/assets/:file", path: () => "/ui/assets/pages.css", open: true, expect: {} },
  {
    method: "GET",
    route: "/ops/map",
    path: () => "/ops/map?west=-74.01&south=40.7&east=-73.97&north=40.76&zoom=14",
    expect: { operations: 200 },
  },
  { method: "GET", route: "/ops/summary", path: () => "/ops/summary", expect: { operations: 200 } },
  {
    method: "POST",
    route: "/orders/",
    path: () => "/orders",
    body: (s) => ({ customer_id: s.customerA, restaurant_id: s.restaurantA, delivery: offset(s.at, 500, 0), items }),
    expect: { "customer own": 201 },
  },
  {
    method: "GET",
    route: "/orders/:order_id",
    path: (s) => `/orders/${s.own}`,
    expect: {
      "customer own": 200,
      "customer other": 404,
      "restaurant own": 200,
      "restaurant other": 404,
      "driver own": 200,
      "driver other": 404,
      operations: 200,
    },
  },
  // Confirmed and assigned already: allowed callers reach the state machine, which refuses (409).
  {
    method: "POST",
    route: "/orders/:order_id/confirm",
    path: (s) => `/orders/${s.own}/confirm`,
    expect: { "restaurant own": 409, "restaurant other": 404 },
  },
  {
    method: "POST",
    route: "/orders/:order_id/assign",
    path: (s) => `/orders/${s.own}/assign`,
    expect: { "restaurant own": 409, "restaurant other": 404 },
  },
  // The driver is assigned but not at the restaurant yet / not arriving: the state machine refuses (409).
  {
    method: "POST",
    route: "/orders/:order_id/pickup",
    path: (s) => `/orders/${s.own}/pickup`,
    expect: { "driver own": 409, "driver other": 404 },
  },
  {
    method: "POST",
    route: "/orders/:order_id/deliver",
    path: (s) => `/orders/${s.own}/deliver`,
    expect: { "driver own": 409, "driver other": 404 },
  },
  {
    method: "POST",
    route: "/orders/:order_id/cancel",
    path: (s) => `/orders/${s.own}/cancel`,
    expect: { "customer own": 200, "customer other": 404, "restaurant own": 200, "restaurant other": 404 },
  },
  ...(["/track/:order_id", "/track/:order_id/live"] as const).map(
    (route): Row => ({
      method: "GET",
      route,
      path: (s) => route.replace(":order_id", s.own),
      expect: {
        "customer own": 200,
        "customer other": 404,
        "restaurant own": 200,
        "restaurant other": 404,
        operations: 200,
        "tracker this": 200,
      },
    }),
  ),
  {
    method: "GET",
    route: "/drivers/:driver_id",
    path: (s) => `/drivers/${s.driverA}`,
    expect: { "driver own": 200, operations: 200 },
  },
  // Kafka is down in this harness: the driver itself gets as far as the send (503).
  {
    method: "PATCH",
    route: "/drivers/:driver_id/location",
    path: (s) => `/drivers/${s.driverA}/location`,
    body: position,
    expect: { "driver own": 503 },
  },
  {
    method: "POST",
    route: "/drivers/:driver_id/mqtt-credentials",
    path: (s) => `/drivers/${s.driverA}/mqtt-credentials`,
    expect: { "driver own": 200 },
  },
  {
    method: "DELETE",
    route: "/drivers/:driver_id/mqtt-credentials",
    path: (s) => `/drivers/${s.driverA}/mqtt-credentials`,
    expect: { "driver own": 204, operations: 204 },
  },
];

function expected(row: Row, caller: CallerName): number {
  if (row.open) return row.route === "/ready" ? 503 : 200;
  return row.expect[caller] ?? (unauthenticated as Partial<Record<CallerName, number>>)[caller] ?? 403;
}

async function send(row: Row, s: Scene, who: Awaited<ReturnType<typeof callerFor>>) {
  const headers: Record<string, string> = {};
  if (who && typeof who === "object" && "header" in who) headers.authorization = who.header;
  const as = who && !(typeof who === "object" && "header" in who) ? who : undefined;
  const body = row.body?.(s);
  const res = await h.fetch(row.method, row.path(s), {
    as,
    headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const isJson = res.headers.get("content-type")?.includes("json") && res.status >= 400;
  const json = isJson ? await res.json() : undefined;
  if (!isJson) await res.body?.cancel(); // live streams stay open otherwise
  return { status: res.status, error: (json as { error?: { code: string } } | undefined)?.error };
}

describe("every endpoint x every caller", () => {
  for (const row of ROWS) {
    test(`${row.method} ${row.route}`, async () => {
      const s = await scene();
      const got: Record<string, number> = {};
      const want: Record<string, number> = {};
      for (const name of CALLERS) {
        // Writes that succeed change the order: the rest of the row gets a scene of its own after one.
        const mine = expected(row, name) < 300 && row.method !== "GET" ? await scene() : s;
        const result = await send(row, mine, await callerFor(name, mine));
        got[name] = result.status;
        want[name] = expected(row, name);
        if (result.status === 401) expect(result.error?.code).toBe("UNAUTHENTICATED");
        if (result.status === 403) expect(result.error?.code).toBe("FORBIDDEN");
      }
      expect(got).toEqual(want);
    }, 60_000);
  }

  test("MQTT sign-in hands the driver its own credentials and the broker's address without the API's user", async () => {
    const s = await scene();
    const res = await h.call("POST", `/drivers/${s.driverA}/mqtt-credentials`, undefined, { as: driver(s.driverA) });
    expect(res.body).toEqual({ username: s.driverA, password: "pw", client_id: `driver-${s.driverA}`, mqtt_url: "mqtt://127.0.0.1:1883" });
    expect(issued.at(-1)).toBe(s.driverA);
    const unknown = crypto.randomUUID();
    const missing = await h.call("POST", `/drivers/${unknown}/mqtt-credentials`, undefined, { as: driver(unknown) });
    expect(missing.status).toBe(404);
    expect(issued.at(-1)).toBe(s.driverA); // nothing issued for a driver that does not exist
    const revokedByOps = await h.call("DELETE", `/drivers/${s.driverA}/mqtt-credentials`, undefined, { as: OPS });
    expect(revokedByOps.status).toBe(204);
    expect(revoked.at(-1)).toBe(s.driverA);
  });

  test("another party's order answers exactly like an unknown one", async () => {
    const s = await scene();
    const unknown = "00000000-0000-4000-8000-000000000000";
    for (const [path, as] of [
      [`/orders/${s.own}`, customer(s.customerB)],
      [`/orders/${s.own}/confirm`, restaurant(s.restaurantB)],
      [`/orders/${s.own}/pickup`, driver(s.driverB)],
      [`/track/${s.own}`, customer(s.customerB)],
    ] as const) {
      const method = path.startsWith("/track") || !path.includes("/", 8) ? "GET" : "POST";
      const hidden = await h.call(method, path, undefined, { as });
      const missing = await h.call(method, path.replace(s.own, unknown), undefined, { as });
      expect(hidden.status).toBe(404);
      expect(hidden.body).toEqual({ error: { code: "NOT_FOUND", message: `order ${s.own} does not exist` } });
      expect(missing.body).toEqual({ error: { code: "NOT_FOUND", message: `order ${unknown} does not exist` } });
    }
  });
});

describe("deny by default", () => {
  test("every route declares a rule, and the table above covers every route", () => {
    const routes = h.app.routes.map((r) => ({ key: `${r.method} ${r.path}`, rule: ruleOf(r) }));
    expect(routes.filter((r) => r.rule === undefined).map((r) => r.key)).toEqual([]);
    const covered = new Set(ROWS.map((r) => `${r.method} ${r.route}`));
    expect(routes.map((r) => r.key).filter((key) => !covered.has(key))).toEqual([]);
    // Open routes in the table are exactly the open routes of the app.
    const open = routes.filter((r) => r.rule === "open").map((r) => r.key).sort();
    expect(open).toEqual(ROWS.filter((r) => r.open).map((r) => `${r.method} ${r.route}`).sort());
  });

  test("an app with a route that declares no rule is refused at construction", () => {
    const auth = authPlugin(createTokenService(h.auth));
    const ruled = new Elysia().use(auth).get("/a", () => "a", { auth: ["operations"] }).get("/b", () => "b", { open: true });
    expect(() => assertEveryRouteHasARule(ruled.routes)).not.toThrow();
    const forgotten = new Elysia().use(auth).get("/a", () => "a", { auth: ["operations"] }).post("/c", () => "c");
    expect(() => assertEveryRouteHasARule(forgotten.routes)).toThrow("routes without an auth rule (deny by default): POST /c");
  });
});
