import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import type { FeedListener, OrderFeed } from "../../../../api/modules/tracking/feed.ts";
import { createHeartbeats } from "../../../../api/modules/tracking/heartbeats.ts";
import { openLiveStream } from "../../../../api/modules/tracking/live.ts";
import { startLiveSocketServer } from "../../../../api/modules/tracking/live-socket.ts";
import type { OrderAccess } from "../../../../api/auth/order-access.ts";
import { createTokenService } from "../../../../api/auth/tokens.ts";
import type { Track } from "../../../../api/modules/tracking/model.ts";
import type { TrackingService } from "../../../../api/modules/tracking/service.ts";
import { type CloseReason, createLiveStreamGate, type LiveStreamGate } from "../../../../api/modules/tracking/streams.ts";
import { applyPositions } from "../../../support/positions.ts";
import { customer, OPS, testAuthConfig } from "../../support/auth.ts";
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
  const created = await orderParties(h).place({ customerId, restaurantId, delivery });
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

  test("a client that never reads is dropped after two heartbeats, with nothing queued for it", async () => {
    // Nearer than the drivers earlier tests freed, so the order is this one's.
    const { orderId, driverId } = await assignedOrder(80);
    const before = h.feed.subscribers;
    const res = await h.fetch("GET", `/track/${orderId}/live`, { as: customer(customerId) });
    expect(res.status).toBe(200);
    expect(h.feed.subscribers).toBe(before + 1);
    // Nobody reads res.body, as a stalled socket would not: the events wait as the newest of each kind, not a queue.
    let moves = 0;
    await waitFor(
      "the stalled stream to be dropped",
      async () => {
        if (h.feed.subscribers === before) return true;
        moves += 1;
        await applyPositions(h.sql, [{ driverId, ...offset(ORIGIN, 0, 100 + (moves % 2) * 100) }]);
        return false;
      },
      60_000,
    );
    const metrics = await h.call("GET", "/metrics", undefined, { as: OPS });
    expect(metrics.body).toContain('live_streams_closed_total{reason="slow_client"} 1');
    // Nothing waits for it: the stream is errored (a server resets the socket), no stale positions left.
    await expect(res.body!.getReader().read()).rejects.toBeUndefined();
  }, 90_000);
});

describe("the live-stream ceiling (in process; the real server: test/api/live-streams-server.test.ts)", () => {
  let capped: Harness;
  beforeAll(async () => {
    capped = await startHarness("api_live_cap", { liveStreamsMax: 1 });
  });
  afterAll(() => capped.close());

  test("past it a stream is refused at once (503, Retry-After); one that never opened frees its slot", async () => {
    const customerId = await seedCustomer(capped.sql);
    const restaurantId = await seedRestaurant(capped.sql);
    const created = await orderParties(capped).place({ customerId, restaurantId, delivery, item: "Tea", priceCents: 300 });
    expect(created.status).toBe(201);
    const as = { as: customer(customerId) };
    // A 404 takes the slot only while it is decided.
    expect((await capped.call("GET", `/track/${crypto.randomUUID()}/live`, undefined, as)).status).toBe(404);

    const first = await capped.fetch("GET", `/track/${created.body.id}/live`, as);
    expect(first.status).toBe(200);
    const live = sseReader(first);
    expect((await live.nextEvent())?.event).toBe("track");

    const refused = await capped.call("GET", `/track/${created.body.id}/live`, undefined, as);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("10");
    expect(refused.headers.get("content-type")).toStartWith("application/json");
    expect(refused.headers.get("connection")).toBe("close"); // the refused client's descriptor is not kept either
    expect(refused.body).toEqual({ error: { code: "TOO_MANY_STREAMS", message: expect.stringContaining("(1)") } });
    // GET /track is no stream: it still answers.
    expect((await capped.call("GET", `/track/${created.body.id}`, undefined, as)).status).toBe(200);

    await live.cancel();
    const again = await capped.fetch("GET", `/track/${created.body.id}/live`, as);
    expect(again.status).toBe(200);
    await again.body!.cancel();

    const metrics = (await capped.call("GET", "/metrics", undefined, { as: OPS })).body as string;
    expect(metrics).toMatch(/^live_streams 0$/m);
    expect(metrics).toMatch(/^live_streams_max 1$/m);
    expect(metrics).toMatch(/^live_streams_refused_total 1$/m);
    expect(metrics).toContain('live_streams_closed_total{reason="client"} 2');
  });
});

/**
 * The same stream from both servers: the API's (Bun.serve) and the live socket server (live-socket.ts, raw sockets).
 * Their writes to a slow socket differ (a direct stream; the socket writer's partial writes), their rules must not.
 */
const SERVERS = ["Bun.serve", "live socket server"] as const;

describe.each(SERVERS)("over real sockets (%s, a fake feed pushing 32 KB events)", (kind) => {
  const orderId = crypto.randomUUID();
  const listeners = new Set<FeedListener>();
  const feed: OrderFeed = {
    async subscribe(_orderId, listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    async observe() {
      return () => undefined;
    },
    async start() {},
    get subscribers() {
      return listeners.size;
    },
    close() {},
  };
  const snapshot: Track = {
    order_id: orderId,
    status: "assigned",
    restaurant: { id: crypto.randomUUID(), name: "Noodle Bar", ...ORIGIN },
    delivery,
    driver: null,
    eta_seconds: null,
  };
  const tracking: TrackingService = { track: async () => snapshot };
  const closed: CloseReason[] = [];
  const heartbeats = createHeartbeats(HEARTBEAT_MS);
  let server: { port: number; stop(): unknown };
  let request = "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const sockets: net.Socket[] = [];
  beforeAll(async () => {
    if (kind === "Bun.serve") {
      const serving = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch: () =>
          openLiveStream(
            orderId,
            { feed, tracking, heartbeats },
            { onClose: (reason) => closed.push(reason) },
          ),
      });
      server = { port: serving.port!, stop: () => serving.stop(true) };
      return;
    }
    const tokens = createTokenService(testAuthConfig());
    const gate = createLiveStreamGate(Number.POSITIVE_INFINITY);
    // The gate's free is the stream's onClose: count the reasons through it.
    const counted: LiveStreamGate = {
      ...gate,
      free: (reason) => {
        if (reason) closed.push(reason);
        gate.free(reason);
      },
    };
    const access = { check: async () => undefined } as unknown as OrderAccess;
    server = startLiveSocketServer(
      { live: { feed, tracking, heartbeats }, tokens, access, liveStreams: counted },
      { hostname: "127.0.0.1", port: 0 },
    );
    const token = (await tokens.mint("operations", "ops-test", { ttl: "1h" })).token;
    request = `GET /track/${orderId}/live HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await server.stop();
  });

  /** A raw HTTP client: sends the request and resolves once the response's headers are in. */
  async function connect(): Promise<{ socket: net.Socket; received: () => number; tail: () => string }> {
    const socket = net.connect(server.port, "127.0.0.1");
    sockets.push(socket);
    let bytes = 0;
    let head = "";
    let tail = "";
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        tail = (tail + chunk.toString("latin1")).slice(-256 * 1024);
        if (!head.includes("\r\n\r\n")) {
          head += chunk.toString("latin1");
          if (head.includes("\r\n\r\n")) resolve();
        }
      });
      socket.write(request);
    });
    expect(head).toStartWith("HTTP/1.1 200");
    return { socket, received: () => bytes, tail: () => tail };
  }

  test("a client that stops reading is dropped and its socket closed; one that reads keeps up to the newest", async () => {
    const reading = await connect();
    const stalled = await connect();
    stalled.socket.pause(); // reads nothing more: the kernel's buffers fill, then the stream's queue
    await waitFor("both streams to subscribe", () => listeners.size === 2);

    let pushed = 0;
    const padding = "x".repeat(32 * 1024);
    await waitFor(
      "the stalled client to be dropped",
      () => {
        if (closed.length > 0) return true;
        pushed += 1;
        const at = new Date(Date.UTC(2026, 0, 1) + pushed).toISOString();
        const notice = { order_id: orderId, status: "assigned", ...ORIGIN, at, padding };
        const event = { kind: "position" as const, notice };
        for (const listener of listeners) listener(event);
        return false;
      },
      60_000,
    );
    expect(closed).toEqual(["slow_client"]);
    expect(listeners.size).toBe(1); // the reader's
    // Megabytes went to the reader meanwhile, and it was not dropped: when it fell behind it skipped to the newest.
    expect(pushed * padding.length).toBeGreaterThan(1024 * 1024);
    const last = new Date(Date.UTC(2026, 0, 1) + pushed + 1).toISOString();
    const newest = { kind: "position" as const, notice: { order_id: orderId, status: "assigned", ...ORIGIN, at: last, padding } };
    for (const listener of listeners) listener(newest);
    await waitFor("the reader to receive the newest event", () => reading.tail().includes(last));
    expect(reading.received()).toBeGreaterThan(1024 * 1024);

    // The server reset the stalled client's connection (its descriptor is free), paused or not.
    stalled.socket.resume();
    await waitFor("the stalled client's socket to close", () => stalled.socket.destroyed);
    expect(reading.socket.destroyed).toBe(false);
  }, 90_000);
});
