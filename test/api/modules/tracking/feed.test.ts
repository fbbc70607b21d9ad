import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createOrderFeed, type FeedEvent, TRACKING_CHANNEL } from "../../../../api/modules/tracking/feed.ts";
import { connectDatabase } from "../../../../lib/db.ts";
import { freshDatabase, type TestDatabase } from "../../../support/db.ts";
import { waitFor } from "../../support/wait.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await freshDatabase("api_feed");
});
afterAll(() => db.drop());

const A = "11111111-1111-4111-8111-111111111111";
const B = "22222222-2222-4222-8222-222222222222";
const notify = (payload: unknown) =>
  db.sql`select pg_notify(${TRACKING_CHANNEL}, ${typeof payload === "string" ? payload : JSON.stringify(payload)})`;

describe("order feed", () => {
  test("fans notices out by order id: positions, status changes, nothing for other orders", async () => {
    const feed = createOrderFeed(db.sql);
    const gotA: FeedEvent[] = [];
    const gotB: FeedEvent[] = [];
    const offA = await feed.subscribe(A, (e) => gotA.push(e));
    const offB = await feed.subscribe(B, (e) => gotB.push(e));
    expect(feed.subscribers).toBe(2);

    const position = {
      order_id: A,
      status: "assigned",
      driver_id: B,
      driver_state: "assigned",
      lat: 40.7,
      lon: -73.9,
      at: "2026-01-01T12:00:00+00:00",
      eta_seconds: 300,
    };
    await notify(position);
    await notify({ order_id: A, status: "picked_up" });
    await notify("not json");
    await notify({ status: "no order id" });
    await waitFor("two events for A", () => gotA.length >= 2);

    expect(gotA).toEqual([
      { kind: "position", notice: position },
      { kind: "status", notice: { order_id: A, status: "picked_up" } },
    ]);
    expect(gotB).toEqual([]);

    offA();
    offA(); // twice is harmless
    await notify({ order_id: A, status: "delivered" });
    await notify({ order_id: B, status: "cancelled" });
    await waitFor("B's event", () => gotB.length === 1);
    expect(gotA.length).toBe(2);
    expect(feed.subscribers).toBe(1);

    feed.close();
    expect(gotB.at(-1)).toEqual({ kind: "closing" });
    expect(feed.subscribers).toBe(0);
    offB();
    await expect(feed.subscribe(A, () => {})).rejects.toThrow("closed");
  });

  test("several subscribers of one order each get every event", async () => {
    const feed = createOrderFeed(db.sql);
    const first: FeedEvent[] = [];
    const second: FeedEvent[] = [];
    await feed.subscribe(A, (e) => first.push(e));
    await feed.subscribe(A.toUpperCase(), (e) => second.push(e));
    await notify({ order_id: A, status: "confirmed" });
    await waitFor("both subscribers", () => first.length === 1 && second.length === 1);
    expect(second).toEqual(first);
    feed.close();
  });

  test("an order's watchers come and go in any order: one alone, then several, then one again, then none", async () => {
    const feed = createOrderFeed(db.sql);
    const got = [[], [], []] as FeedEvent[][];
    const [off0, off1, off2] = [
      await feed.subscribe(A, (e) => got[0]!.push(e)),
      await feed.subscribe(A, (e) => got[1]!.push(e)),
      await feed.subscribe(A, (e) => got[2]!.push(e)),
    ];
    off0();
    await notify({ order_id: A, status: "confirmed" });
    await waitFor("the two left", () => got[1]!.length === 1 && got[2]!.length === 1);
    off2();
    off2();
    expect(feed.subscribers).toBe(1);
    await notify({ order_id: A, status: "assigned" });
    await waitFor("the last one", () => got[1]!.length === 2);
    off1();
    expect(feed.subscribers).toBe(0);
    // A new watcher of the same order after all left: alone again, and the others hear nothing more.
    const again: FeedEvent[] = [];
    await feed.subscribe(A, (e) => again.push(e));
    await notify({ order_id: A, status: "picked_up" });
    await waitFor("the new watcher", () => again.length === 1);
    expect(got.map((events) => events.length)).toEqual([0, 2, 1]);
    feed.close();
  });

  test("a feed whose database is unreachable refuses subscribers, and tries again for the next one", async () => {
    const down = connectDatabase("postgresql://postgres:postgres@127.0.0.1:1/none", { max: 1 });
    const feed = createOrderFeed(down);
    await expect(feed.subscribe(A, () => {})).rejects.toThrow();
    expect(feed.subscribers).toBe(0);
    await expect(feed.subscribe(A, () => {})).rejects.toThrow();
    expect(feed.subscribers).toBe(0);
    await down.end({ timeout: 0 });
  });

  test("start() issues the LISTEN before any subscriber, once however often it is called, and not after close()", async () => {
    const own = connectDatabase(db.url, { max: 2 });
    const listeners = async () =>
      (await db.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and query ilike ${`listen%${TRACKING_CHANNEL}%`} and pid <> pg_backend_pid()`)[0]!.n;
    const before = await listeners();
    const feed = createOrderFeed(own);
    await feed.start();
    await feed.start();
    expect(await listeners()).toBe(before + 1);
    // Subscribing later reuses it.
    const got: FeedEvent[] = [];
    await feed.subscribe(A, (e) => got.push(e));
    expect(await listeners()).toBe(before + 1);
    await notify({ order_id: A, status: "confirmed" });
    await waitFor("the event", () => got.length === 1);
    feed.close();
    await expect(feed.start()).rejects.toThrow("closed");
    await own.end({ timeout: 0 });
  });

  test("start() on an unreachable database rejects, and the next call tries again", async () => {
    const down = connectDatabase("postgresql://postgres:postgres@127.0.0.1:1/none", { max: 1 });
    const feed = createOrderFeed(down);
    await expect(feed.start()).rejects.toThrow();
    await expect(feed.start()).rejects.toThrow();
    await down.end({ timeout: 0 });
  });
});
