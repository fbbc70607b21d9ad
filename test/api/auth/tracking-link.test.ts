/** The shareable tracking link POST /orders answers with: one order's tracking, nothing else, for a few hours. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { orderParties } from "../support/orders.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { ORIGIN, offset, seedCustomer, seedRestaurant } from "../support/seed.ts";

let h: Harness;
let customerId: string;
let restaurantId: string;
beforeAll(async () => {
  h = await startHarness("api_tracking_link");
  customerId = await seedCustomer(h.sql);
  restaurantId = await seedRestaurant(h.sql);
});
afterAll(() => h.close());

async function place() {
  const res = await orderParties(h).place({ customerId, restaurantId, delivery: offset(ORIGIN, 900, 0), item: "Rice", priceCents: 500 });
  expect(res.status).toBe(201);
  return res.body as { id: string; tracking: { token: string; url: string; live_url: string; expires_at: string } };
}

describe("tracking link", () => {
  test("answers POST /orders: a token for this order, its URLs, and an expiry AUTH_TRACKING_LINK_TTL away", async () => {
    const order = await place();
    const { token, url, live_url, expires_at } = order.tracking;
    expect(url).toBe(`/track/${order.id}?token=${token}`);
    expect(live_url).toBe(`/track/${order.id}/live?token=${token}`);
    expect(await h.tokens.verify(token)).toEqual({ role: "tracker", sub: order.id });
    const expected = Date.now() + h.auth.trackingLinkTtlSeconds * 1000;
    expect(Math.abs(Date.parse(expires_at) - expected)).toBeLessThan(60_000);
  });

  test("opens the order's tracking and live stream from the URL alone (no headers, as EventSource)", async () => {
    const order = await place();
    const track = await h.call("GET", order.tracking.url);
    expect(track.status).toBe(200);
    expect(track.body.order_id).toBe(order.id);
    const live = await h.fetch("GET", order.tracking.live_url);
    expect(live.status).toBe(200);
    expect(live.headers.get("content-type")).toStartWith("text/event-stream");
    await live.body?.cancel();
  });

  test("opens nothing else: another order's tracking 403, the order itself 403, a query token elsewhere 401", async () => {
    const order = await place();
    const other = await place();
    const link = order.tracking.token;
    const elsewhere = await h.call("GET", `/track/${other.id}?token=${link}`);
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.error.code).toBe("FORBIDDEN");
    expect((await h.call("GET", `/orders/${order.id}`, undefined, { as: link })).status).toBe(403);
    expect((await h.call("POST", `/orders/${order.id}/cancel`, undefined, { as: link })).status).toBe(403);
    // Only the track routes read ?token= (a URL is logged and shared; a bearer header is not).
    const query = await h.call("GET", `/orders/${order.id}?token=${link}`);
    expect(query.status).toBe(401);
    expect(query.headers.get("www-authenticate")).toContain("Bearer");
  });

  test("a tampered link is refused: 401", async () => {
    const order = await place();
    const [header, payload, signature] = order.tracking.token.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: (await place()).id })).toString("base64url");
    const res = await h.call("GET", `/track/${claims.sub}?token=${header}.${forged}.${signature}`);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("UNAUTHENTICATED");
  });
});
