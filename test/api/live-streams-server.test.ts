/**
 * Issue #17 on a real `bun api/server.ts`: with LIVE_STREAMS_MAX=200 it holds 200 live streams, refuses the next ones
 * at once (503 JSON, Retry-After) without spinning, keeps /health and /ready answering, and keeps the streams it holds
 * receiving.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createTokenService } from "../../api/auth/tokens.ts";
import { authConfig } from "../../lib/config.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { applyPositions } from "../support/positions.ts";
import { sseReader } from "./support/sse.ts";
import { allowTeleports, ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "./support/seed.ts";
import { type ApiProcess, startApiProcess } from "./support/server-process.ts";
import { waitFor } from "./support/wait.ts";

const CEILING = 200;
const REFUSALS = 100;
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: what /proc/<pid>/stat counts in, 100 on every Linux architecture

let db: TestDatabase;
let api: ApiProcess;
const streams: ReturnType<typeof sseReader>[] = [];

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The fields after the command name (which may hold spaces) in parentheses: state is the first, utime the 12th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

const tokens = () => createTokenService(authConfig());
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(async () => {
  db = await freshDatabase("api_live_streams");
  await allowTeleports(db.sql);
  api = await startApiProcess({ DATABASE_URL: db.url, LIVE_STREAMS_MAX: String(CEILING) }, "/ready");
}, 60_000);

afterAll(async () => {
  await Promise.all(streams.map((s) => s.cancel().catch(() => undefined)));
  await api?.stop();
  await db.drop();
}, 60_000);

describe("api/server.ts at its live-stream ceiling", () => {
  test(`holds ${CEILING} streams, refuses more at once without spinning, /health and /ready answer`, async () => {
    expect(api.output()).toContain(`at most ${CEILING} live streams`);

    // An order with a driver, and its tracking link (the token a browser's EventSource carries in the query).
    const customerId = await seedCustomer(db.sql);
    const restaurantId = await seedRestaurant(db.sql);
    const driverId = await seedDriver(db.sql, { at: offset(ORIGIN, 0, 300) });
    const asCustomer = bearer((await tokens().mint("customer", customerId, { ttl: "10m" })).token);
    const created = await fetch(`${api.base}/orders`, {
      method: "POST",
      headers: { "content-type": "application/json", ...asCustomer },
      body: JSON.stringify({
        customer_id: customerId,
        restaurant_id: restaurantId,
        delivery: offset(ORIGIN, 900, 0),
        items: [{ name: "Rice", qty: 1, price_cents: 500 }],
      }),
    });
    expect(created.status).toBe(201);
    const order = (await created.json()) as { id: string; tracking: { live_url: string } };
    const asRestaurant = bearer((await tokens().mint("restaurant", restaurantId, { ttl: "10m" })).token);
    const confirmed = await fetch(`${api.base}/orders/${order.id}/confirm`, { method: "POST", headers: asRestaurant });
    expect(((await confirmed.json()) as { driver: { id: string } }).driver.id).toBe(driverId);
    const liveUrl = `${api.base}${order.tracking.live_url}`;
    const asOps = bearer((await tokens().mint("operations", "ops-test", { ttl: "10m" })).token);
    const metrics = async () => (await fetch(`${api.base}/metrics`, { headers: asOps })).text();

    // Up to the ceiling: every stream opens and gets its snapshot.
    const opened = await Promise.all(Array.from({ length: CEILING }, () => fetch(liveUrl)));
    expect(opened.map((r) => r.status)).toEqual(Array(CEILING).fill(200));
    streams.push(...opened.map(sseReader));
    for (const live of streams) expect((await live.nextEvent(30_000))?.event).toBe("track");
    expect(await metrics()).toMatch(new RegExp(`^live_streams ${CEILING}$`, "m"));

    const refuse = async () => {
      const res = await fetch(liveUrl);
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("10");
      expect(await res.json()).toEqual({ error: { code: "TOO_MANY_STREAMS", message: expect.any(String) } });
    };
    const health = async () => {
      const started = performance.now();
      const res = await fetch(`${api.base}/health`, { signal: AbortSignal.timeout(10_000) });
      expect(await res.json()).toEqual({ status: "ok" });
      return performance.now() - started;
    };
    for (let i = 0; i < 5; i++) await refuse(); // warm: the first calls compile code, which is not what is measured

    // Past the ceiling: refusals paced a few ms apart as clients would arrive (a pace, not a wait for anything),
    // /health asked in between. The server spun at 91% of a core here; a refusing one idles between calls.
    const pid = api.proc.pid;
    const cpuBefore = cpuSeconds(pid);
    const wallBefore = performance.now();
    const healthMs: number[] = [];
    for (let i = 0; i < REFUSALS; i++) {
      await refuse();
      if (i % 10 === 0) healthMs.push(await health());
      await Bun.sleep(10);
    }
    const wall = (performance.now() - wallBefore) / 1000;
    const cpu = cpuSeconds(pid) - cpuBefore;
    console.log(
      `[live-streams] ${REFUSALS} refusals in ${wall.toFixed(2)} s wall, server CPU ${cpu.toFixed(2)} s; ` +
        `/health ${healthMs.map((ms) => ms.toFixed(1)).join(", ")} ms`,
    );
    expect(cpu).toBeLessThan(wall * 0.5);

    const ready = await fetch(`${api.base}/ready`, { signal: AbortSignal.timeout(10_000) });
    expect(ready.status).toBe(200);
    const counted = await metrics();
    expect(counted).toMatch(new RegExp(`^live_streams ${CEILING}$`, "m"));
    expect(counted).toMatch(new RegExp(`^live_streams_refused_total ${REFUSALS + 5}$`, "m"));

    // The streams it holds keep receiving: the driver moves, every one of them gets the position.
    const moved = offset(ORIGIN, 0, 150);
    await applyPositions(db.sql, [{ driverId, ...moved }]);
    for (const live of streams) {
      const event = await live.nextEvent(30_000);
      expect(event).toMatchObject({ event: "position", data: { lat: moved.lat, lon: moved.lon } });
    }

    // A client that leaves frees its slot for the next one.
    await streams.shift()!.cancel();
    await waitFor("the server to free the slot", async () => /^live_streams 199$/m.test(await metrics()), 20_000);
    const next = await fetch(liveUrl);
    expect(next.status).toBe(200);
    streams.push(sseReader(next));
    expect((await streams.at(-1)!.nextEvent())?.event).toBe("track");
    expect(await metrics()).toMatch(/^live_streams_closed_total\{reason="client"\} 1$/m);
    expect(api.output()).not.toContain("TOO_MANY_STREAMS"); // counted, not logged once per refusal
  }, 120_000);
});
