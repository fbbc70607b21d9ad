// The GET /track cache: first as pure code against a scripted feed (every race made explicit), then against the
// real database, where only the database's own notices may refresh an answer.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTrackCache } from "../../../../api/modules/tracking/cache.ts";
import type { FeedObserver, OrderFeed } from "../../../../api/modules/tracking/feed.ts";
import type { Track } from "../../../../api/modules/tracking/model.ts";
import { applyPositions } from "../../../support/positions.ts";
import { customer, OPS } from "../../support/auth.ts";
import { type Harness, startHarness } from "../../support/harness.ts";
import { orderParties } from "../../support/orders.ts";
import { ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "../../support/seed.ts";

const ORDER = "6c1f3a2e-9d4b-4e8a-a1c2-0b9e8d7f6a5c";

function scriptedFeed() {
  const observers = new Set<FeedObserver>();
  let ready: () => void = () => {};
  const listening = new Promise<void>((resolve) => (ready = resolve));
  const feed: OrderFeed = {
    subscribe: () => Promise.reject(new Error("not used")),
    async observe(observer) {
      observers.add(observer);
      await listening;
      return () => void observers.delete(observer);
    },
    start: () => listening,
    subscribers: 0,
    close() {},
  };
  return { feed, ready, notify: (orderId: string | null) => observers.forEach((o) => o(orderId)) };
}

const track = (version: number, updatedAt: string | null = null): Track => ({
  order_id: ORDER,
  status: "assigned",
  restaurant: { id: ORDER, name: "r", lat: 1, lon: 2 },
  delivery: { lat: 3, lon: 4 },
  driver: updatedAt === null ? null : {
    id: ORDER, name: "d", lat: version, lon: 0, h3: null, state: "assigned", updated_at: updatedAt,
    position_age_seconds: 0,
  },
  eta_seconds: version,
});

/** A loader whose answers the test releases one by one. */
function scriptedLoader() {
  const pending: { resolve: (t: Track | undefined) => void }[] = [];
  let calls = 0;
  const load = (_id: string) => {
    calls += 1;
    return new Promise<Track | undefined>((resolve) => pending.push({ resolve }));
  };
  return { load, answer: (t: Track | undefined) => pending.shift()!.resolve(t), calls: () => calls };
}

async function listeningCache(options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {}) {
  const feed = scriptedFeed();
  const loader = scriptedLoader();
  const cache = createTrackCache(loader.load, feed.feed, { ttlMs: 60_000, maxEntries: 100, ...options });
  // The first request starts LISTEN and reads the database; nothing is kept before LISTEN is active.
  const before = cache.get(ORDER);
  loader.answer(track(0));
  expect(await before).toEqual(track(0));
  feed.ready();
  await Bun.sleep(0);
  return { cache, feed, loader };
}

describe("track cache (pure)", () => {
  test("nothing is kept before LISTEN is active", async () => {
    const { cache, loader } = await listeningCache();
    expect(loader.calls()).toBe(1);
    expect(cache.size).toBe(0);
  });

  test("serves repeats from memory until its order's notice, then reads again", async () => {
    const { cache, feed, loader } = await listeningCache();
    const first = cache.get(ORDER);
    loader.answer(track(1));
    expect(await first).toEqual(track(1));
    expect(await cache.get(ORDER)).toEqual(track(1));
    expect(await cache.get(ORDER.toUpperCase())).toEqual(track(1));
    expect(loader.calls()).toBe(2);

    feed.notify("00000000-0000-4000-8000-000000000000"); // another order: no effect
    expect(await cache.get(ORDER)).toEqual(track(1));
    feed.notify(ORDER);
    const after = cache.get(ORDER);
    loader.answer(track(2));
    expect(await after).toEqual(track(2));
    expect(loader.calls()).toBe(3);
    expect({ hits: cache.hits, size: cache.size }).toEqual({ hits: 3, size: 1 });
  });

  test("concurrent requests share one read", async () => {
    const { cache, loader } = await listeningCache();
    const many = [cache.get(ORDER), cache.get(ORDER), cache.get(ORDER)];
    loader.answer(track(1));
    expect(await Promise.all(many)).toEqual([track(1), track(1), track(1)]);
    expect(loader.calls()).toBe(2);
  });

  test("a read overtaken by its order's notice is answered but not kept; later requests read again", async () => {
    const { cache, feed, loader } = await listeningCache();
    const stale = cache.get(ORDER);
    feed.notify(ORDER); // committed while the read was on its way: the read may predate it
    const fresh = cache.get(ORDER); // does not join the overtaken read
    loader.answer(track(1));
    loader.answer(track(2));
    expect(await stale).toEqual(track(1));
    expect(await fresh).toEqual(track(2));
    expect(await cache.get(ORDER)).toEqual(track(2));
    expect(loader.calls()).toBe(3);
  });

  test("a reconnect (null) forgets everything, in flight too", async () => {
    const { cache, feed, loader } = await listeningCache();
    const first = cache.get(ORDER);
    loader.answer(track(1));
    await first;
    const inFlight = cache.get("00000000-0000-4000-8000-000000000000");
    feed.notify(null);
    loader.answer(track(9));
    await inFlight;
    expect(cache.size).toBe(0);
  });

  test("an entry expires after the time-to-live even without a notice", async () => {
    let clock = 1_000;
    const { cache, loader } = await listeningCache({ ttlMs: 500, now: () => clock });
    const first = cache.get(ORDER);
    loader.answer(track(1));
    await first;
    clock += 499;
    expect(await cache.get(ORDER)).toEqual(track(1));
    clock += 1;
    const expired = cache.get(ORDER);
    loader.answer(track(2));
    expect(await expired).toEqual(track(2));
  });

  test("the position's age is worked out per answer", async () => {
    let clock = Date.parse("2026-11-26T10:00:10.000Z");
    const { cache, loader } = await listeningCache({ now: () => clock });
    const first = cache.get(ORDER);
    loader.answer(track(1, "2026-11-26T10:00:00.000Z"));
    await first;
    expect((await cache.get(ORDER))?.driver?.position_age_seconds).toBe(10);
    clock += 2_500;
    expect((await cache.get(ORDER))?.driver?.position_age_seconds).toBe(12.5);
  });

  test("unknown orders and failed reads are not kept", async () => {
    const { cache, loader } = await listeningCache();
    const missing = cache.get(ORDER);
    loader.answer(undefined);
    expect(await missing).toBeUndefined();
    expect(cache.size).toBe(0);
    const feed = scriptedFeed();
    feed.ready();
    let calls = 0;
    const failing = createTrackCache(() => (calls++, Promise.reject(new Error("db down"))), feed.feed, {
      ttlMs: 1_000, maxEntries: 10,
    });
    await expect(failing.get(ORDER)).rejects.toThrow("db down"); // starts LISTEN
    await expect(failing.get(ORDER)).rejects.toThrow("db down"); // listening now
    await expect(failing.get(ORDER)).rejects.toThrow("db down");
    expect({ calls, size: failing.size }).toEqual({ calls: 3, size: 0 });
  });

  test("holds at most maxEntries, dropping the oldest", async () => {
    const { cache, loader } = await listeningCache({ maxEntries: 2 });
    const ids = ["a", "b", "c"].map((c) => `${c.repeat(8)}-0000-4000-8000-000000000000`);
    for (const id of ids) {
      const got = cache.get(id);
      loader.answer(track(1));
      await got;
    }
    expect(cache.size).toBe(2);
    const again = cache.get(ids[0]!);
    expect(loader.calls()).toBe(5); // the oldest was dropped: read again
    loader.answer(track(1));
    await again;
  });

  test("a time-to-live of 0 reads the database every time", async () => {
    const feed = scriptedFeed();
    let calls = 0;
    const cache = createTrackCache(async () => (calls++, track(calls)), feed.feed, { ttlMs: 0, maxEntries: 10 });
    feed.ready();
    for (let i = 1; i <= 3; i++) expect(await cache.get(ORDER)).toEqual(track(i));
  });
});

describe("track cache on the real database", () => {
  let h: Harness;
  beforeAll(async () => {
    // A time-to-live far beyond the test: only the database's notices can refresh an answer.
    h = await startHarness("api_track_cache", { trackCache: { ttlMs: 60_000, maxEntries: 1_000 } });
  });
  afterAll(() => h.close());

  async function eventually(path: string, check: (body: any) => boolean): Promise<any> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const res = await h.call("GET", path, undefined, { as: OPS });
      if (check(res.body)) return res.body;
      if (Date.now() > deadline) throw new Error(`${path} never showed the change: ${JSON.stringify(res.body)}`);
      await Bun.sleep(10);
    }
  }

  /** Resolves once the feed has delivered every notice committed before the call (notices arrive in order). */
  async function noticesDelivered(): Promise<void> {
    const sentinel = crypto.randomUUID();
    let seen!: () => void;
    const arrived = new Promise<void>((resolve) => (seen = resolve));
    const stop = await h.feed.observe((orderId) => orderId === sentinel && seen());
    try {
      await h.sql`select pg_notify('order_tracking', ${JSON.stringify({ order_id: sentinel, status: "created" })})`;
      await arrived;
    } finally {
      stop();
    }
  }

  test("positions, status changes and the offline sweep all reach a cached answer", async () => {
    const customerId = await seedCustomer(h.sql);
    const restaurantId = await seedRestaurant(h.sql, ORIGIN, "Cache Corner");
    const driverId = await seedDriver(h.sql, { at: offset(ORIGIN, 0, 600) });
    const created = await orderParties(h).place({ customerId, restaurantId, delivery: offset(ORIGIN, 1000, 0) });
    const asCustomer = { as: customer(customerId) };
    const orderId: string = created.body.id;
    const path = `/track/${orderId}`;
    expect((await h.call("GET", path, undefined, asCustomer)).body.status).toBe("created");
    await orderParties(h).act(orderId, "confirm");
    // created → assigned: order_transition's notice.
    await eventually(path, (b) => b.status === "assigned" && b.driver?.id === driverId);
    // Confirming sends several notices; one arriving after the rename below would rightly drop the entry. Wait
    // until the feed has delivered everything sent so far, then warm the entry.
    await noticesDelivered();
    expect((await h.call("GET", path, undefined, asCustomer)).body.status).toBe("assigned"); // warm: now served from memory
    // Proof it is served from memory: a change made behind the database's back (no notice) is not seen...
    await h.sql`update drivers set name = 'Renamed' where id = ${driverId}`;
    const metric = async (name: string) => {
      const text: string = (await h.call("GET", "/metrics", undefined, { as: OPS })).body;
      return Number(text.match(new RegExp(`^${name} (\\d+)$`, "m"))?.[1]);
    };
    const hitsBefore = await metric("track_cache_hits_total");
    expect((await h.call("GET", path, undefined, asCustomer)).body.driver.name).not.toBe("Renamed");
    // /metrics counts it as a hit; the answers before it were read from the database.
    expect(await metric("track_cache_hits_total")).toBe(hitsBefore + 1);
    expect(await metric("track_cache_reads_total")).toBeGreaterThanOrEqual(2);
    expect(await metric("track_cache_entries")).toBe(1);

    const moved = offset(ORIGIN, 0, 300);
    await applyPositions(h.sql, [{ driverId, ...moved }]);
    const seen = await eventually(path, (b) => b.driver?.lon === moved.lon);
    expect(seen.driver.lat).toBe(moved.lat);
    expect(seen.driver.name).toBe("Renamed"); // ...until the order's next notice

    // Silent for two hours: with nobody else reporting, silence is judged on the wall clock only after an hour (0016).
    await h.sql`update driver_state set received_at = now() - interval '2 hours' where driver_id = ${driverId}`;
    await h.sql`select sweep_offline_drivers(interval '60 seconds')`;
    await eventually(path, (b) => b.driver?.state === "offline");
  });
});
