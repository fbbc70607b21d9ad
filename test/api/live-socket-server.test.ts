/**
 * The live socket server (LIVE_PORT, api/modules/tracking/live-socket.ts) on a real `bun api/server.ts`: the same
 * stream as the API's port, the same rules (who may open it, what each refusal answers), and nothing else served on
 * its port. The table below enumerates every request shape it can be sent and what it answers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { createTokenService } from "../../api/auth/tokens.ts";
import { HEAD_TIMEOUT_SECONDS } from "../../api/modules/tracking/live-socket.ts";
import { MAX_HEAD_BYTES } from "../../api/modules/tracking/request-head.ts";
import { authConfig } from "../../lib/config.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { applyPositions } from "../support/positions.ts";
import { sseReader } from "./support/sse.ts";
import { allowTeleports, ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "./support/seed.ts";
import { type ApiProcess, freePort, startApiProcess } from "./support/server-process.ts";
import { waitFor } from "./support/wait.ts";

let db: TestDatabase;
let api: ApiProcess;
let livePort: number;
const tokens = () => createTokenService(authConfig());
const mint = async (role: Parameters<ReturnType<typeof tokens>["mint"]>[0], sub: string) =>
  (await tokens().mint(role, sub, { ttl: "10m" })).token;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

let customerId: string;
let restaurantId: string;
let driverId: string;
let orderId: string;
let trackingToken: string;
const delivery = offset(ORIGIN, 900, 0);

beforeAll(async () => {
  db = await freshDatabase("api_live_socket");
  await allowTeleports(db.sql);
  livePort = await freePort();
  api = await startApiProcess({ DATABASE_URL: db.url, LIVE_PORT: String(livePort), LIVE_STREAMS_MAX: "50" }, "/ready");

  customerId = await seedCustomer(db.sql);
  restaurantId = await seedRestaurant(db.sql);
  driverId = await seedDriver(db.sql, { at: offset(ORIGIN, 0, 300) });
  const created = await fetch(`${api.base}/orders`, {
    method: "POST",
    headers: { "content-type": "application/json", ...bearer(await mint("customer", customerId)) },
    body: JSON.stringify({
      customer_id: customerId,
      restaurant_id: restaurantId,
      delivery,
      items: [{ name: "Rice", qty: 1, price_cents: 500 }],
    }),
  });
  expect(created.status).toBe(201);
  const order = (await created.json()) as { id: string; tracking: { token: string } };
  orderId = order.id;
  trackingToken = order.tracking.token;
  const confirmed = await fetch(`${api.base}/orders/${orderId}/confirm`, {
    method: "POST",
    headers: bearer(await mint("restaurant", restaurantId)),
  });
  expect(((await confirmed.json()) as { driver: { id: string } }).driver.id).toBe(driverId);
}, 60_000);

afterAll(async () => {
  await api?.stop();
  await db?.drop();
}, 60_000);

interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/** Sends `request` as it is on a new connection and reads the answer until the server closes the connection. */
function raw(request: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(livePort, "127.0.0.1");
    let received = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      const end = received.indexOf("\r\n\r\n");
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0),
        head: received.slice(0, end),
        body: received.slice(end + 4),
      });
    });
    socket.write(request);
  });
}

const get = (path: string, headers: Record<string, string> = {}) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;

describe("the live socket server (LIVE_PORT)", () => {
  test("says where it listens", () => {
    expect(api.output()).toContain(`live streams also on http://127.0.0.1:${livePort}/track/{order_id}/live`);
  });

  test("streams an order as the API's port does: the snapshot, each position, the status changes and the end", async () => {
    const live = await fetch(`http://127.0.0.1:${livePort}/track/${orderId}/live?token=${trackingToken}`);
    expect(live.status).toBe(200);
    expect(live.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(live.headers.get("cache-control")).toBe("no-cache, no-transform");
    const stream = sseReader(live);
    expect((await stream.next(30_000))?.retry).toBe(3000);
    const first = await stream.nextEvent(30_000);
    expect(first).toMatchObject({ event: "track", data: { order_id: orderId, status: "assigned", driver: { id: driverId } } });

    const near = offset(ORIGIN, 0, 150);
    await applyPositions(db.sql, [{ driverId, ...near, speedKmh: 15 }]);
    expect(await stream.nextEvent(30_000)).toMatchObject({
      event: "position",
      data: { order_id: orderId, driver_id: driverId, lat: near.lat, lon: near.lon },
    });

    // A second client resuming with Last-Event-ID gets the current state at once.
    const resumed = await fetch(`http://127.0.0.1:${livePort}/track/${orderId}/live`, {
      headers: { ...bearer(trackingToken), "last-event-id": "assigned.1" },
    });
    const resumedStream = sseReader(resumed);
    expect(await resumedStream.nextEvent(30_000)).toMatchObject({
      event: "track",
      data: { driver: { lat: near.lat, lon: near.lon } },
    });

    const asDriver = bearer(await mint("driver", driverId));
    await applyPositions(db.sql, [{ driverId, ...ORIGIN }]);
    expect(await stream.nextEvent(30_000)).toMatchObject({ event: "position", data: { driver_state: "at_restaurant" } });
    expect((await fetch(`${api.base}/orders/${orderId}/pickup`, { method: "POST", headers: asDriver })).status).toBe(200);
    expect(await stream.nextEvent(30_000)).toMatchObject({ event: "track", data: { status: "picked_up" } });
    await applyPositions(db.sql, [{ driverId, ...delivery }]);
    expect(await stream.nextEvent(30_000)).toMatchObject({ event: "position", data: { driver_state: "arriving" } });
    expect((await fetch(`${api.base}/orders/${orderId}/deliver`, { method: "POST", headers: asDriver })).status).toBe(200);
    expect(await stream.nextEvent(30_000)).toMatchObject({ event: "track", data: { status: "delivered" } });
    expect(await stream.nextEvent(30_000)).toEqual({ event: "end", data: { order_id: orderId, status: "delivered" } });
    expect(await stream.next(30_000)).toBeUndefined(); // the server closed the connection
    await resumedStream.cancel();
  }, 120_000);

  test("every other request is refused with the API's error shape, and the connection closed", async () => {
    const otherOrder = crypto.randomUUID();
    const ops = await mint("operations", "ops-test");
    const rows: { what: string; request: () => Promise<string>; status: number; code: string; header?: [string, RegExp] }[] = [
      { what: "no token", request: async () => get(`/track/${orderId}/live`), status: 401, code: "UNAUTHENTICATED", header: ["www-authenticate", /^Bearer realm=/] },
      { what: "a forged token", request: async () => get(`/track/${orderId}/live?token=abc.def.ghi`), status: 401, code: "UNAUTHENTICATED" },
      { what: "an Authorization header that is not Bearer", request: async () => get(`/track/${orderId}/live`, { authorization: "Basic dTpw" }), status: 401, code: "UNAUTHENTICATED" },
      { what: "a driver's token (not a tracking role)", request: async () => get(`/track/${orderId}/live`, bearer(await mint("driver", driverId))), status: 403, code: "FORBIDDEN" },
      { what: "another order's tracking link", request: async () => get(`/track/${otherOrder}/live?token=${trackingToken}`), status: 403, code: "FORBIDDEN" },
      { what: "another customer's order", request: async () => get(`/track/${orderId}/live`, bearer(await mint("customer", crypto.randomUUID()))), status: 404, code: "NOT_FOUND" },
      { what: "an unknown order", request: async () => get(`/track/${otherOrder}/live`, bearer(ops)), status: 404, code: "NOT_FOUND" },
      { what: "an id that is not a UUID", request: async () => get("/track/nope/live", bearer(ops)), status: 400, code: "INVALID_ID" },
      { what: "GET /track/{id} (served on the API's port only)", request: async () => get(`/track/${orderId}`, bearer(ops)), status: 404, code: "NOT_FOUND" },
      { what: "GET /health", request: async () => get("/health"), status: 404, code: "NOT_FOUND" },
      { what: "GET /metrics", request: async () => get("/metrics", bearer(ops)), status: 404, code: "NOT_FOUND" },
      { what: "POST on the route", request: async () => `POST /track/${orderId}/live HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n`, status: 405, code: "METHOD_NOT_ALLOWED", header: ["allow", /^GET$/] },
      { what: "a request body", request: async () => `GET /track/${orderId}/live HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello`, status: 400, code: "MALFORMED_REQUEST" },
      { what: "a malformed request line", request: async () => "GET\r\n\r\n", status: 400, code: "MALFORMED_REQUEST" },
      { what: "no Host in HTTP/1.1", request: async () => `GET /track/${orderId}/live HTTP/1.1\r\n\r\n`, status: 400, code: "MALFORMED_REQUEST" },
      { what: "two Authorization headers", request: async () => `GET /track/${orderId}/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ops}\r\nAuthorization: Bearer ${ops}\r\n\r\n`, status: 400, code: "MALFORMED_REQUEST" },
      { what: "HTTP/2.0", request: async () => `GET /track/${orderId}/live HTTP/2.0\r\nHost: x\r\n\r\n`, status: 505, code: "HTTP_VERSION_NOT_SUPPORTED" },
      { what: `a head over ${MAX_HEAD_BYTES} bytes`, request: async () => get(`/track/${orderId}/live`, { "x-pad": "a".repeat(MAX_HEAD_BYTES) }), status: 431, code: "HEADERS_TOO_LARGE" },
    ];
    for (const row of rows) {
      const answer = await raw(await row.request());
      expect({ what: row.what, status: answer.status }).toEqual({ what: row.what, status: row.status });
      expect(JSON.parse(answer.body)).toEqual({ error: { code: row.code, message: expect.any(String) } });
      expect(answer.head).toMatch(/^connection: close$/im);
      if (row.header) expect(answer.head).toMatch(new RegExp(`^${row.header[0]}: ${row.header[1].source.replace(/^\^/, "")}`, "im"));
    }
  }, 60_000);

  test(`a head that does not arrive within ${HEAD_TIMEOUT_SECONDS} s is answered 408 and the connection closed`, async () => {
    const answer = await raw(`GET /track/${orderId}/live HTTP/1.1\r\nHost: x\r\n`); // no blank line: never complete
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body).error.code).toBe("REQUEST_TIMEOUT");
  }, HEAD_TIMEOUT_SECONDS * 1000 + 30_000);

  test("its streams count against the process's one ceiling (LIVE_STREAMS_MAX), with the API port's", async () => {
    const ops = await mint("operations", "ops-test");
    const metrics = async () => (await fetch(`${api.base}/metrics`, { headers: bearer(ops) })).text();
    // A live order of its own (the first test delivered the shared one).
    const driver = await seedDriver(db.sql, { at: offset(ORIGIN, 0, 200) });
    const placed = await fetch(`${api.base}/orders`, {
      method: "POST",
      headers: { "content-type": "application/json", ...bearer(await mint("customer", customerId)) },
      body: JSON.stringify({ customer_id: customerId, restaurant_id: restaurantId, delivery, items: [{ name: "Tea", qty: 1, price_cents: 300 }] }),
    });
    const id = ((await placed.json()) as { id: string }).id;
    await fetch(`${api.base}/orders/${id}/confirm`, { method: "POST", headers: bearer(await mint("restaurant", restaurantId)) });
    expect(driver).toBeString();

    const viaSocket = await Promise.all(Array.from({ length: 25 }, () => fetch(`http://127.0.0.1:${livePort}/track/${id}/live`, { headers: bearer(ops) })));
    const viaApi = await Promise.all(Array.from({ length: 25 }, () => fetch(`${api.base}/track/${id}/live`, { headers: bearer(ops) })));
    expect([...viaSocket, ...viaApi].map((r) => r.status)).toEqual(Array(50).fill(200));
    const readers = [...viaSocket, ...viaApi].map(sseReader);
    for (const reader of readers) expect((await reader.nextEvent(30_000))?.event).toBe("track");
    expect(await metrics()).toMatch(/^live_streams 50$/m);

    const refused = await raw(get(`/track/${id}/live`, bearer(ops)));
    expect(refused.status).toBe(503);
    expect(refused.head).toMatch(/^retry-after: 10$/im);
    expect(JSON.parse(refused.body).error.code).toBe("TOO_MANY_STREAMS");

    await Promise.all(readers.map((r) => r.cancel()));
    await waitFor("the streams' slots to be freed", async () => /^live_streams 0$/m.test(await metrics()), 30_000);
  }, 90_000);
});
