/**
 * The probe's cases against the API: inputs that used to stall it, answer 500, or be accepted and then dead-lettered.
 * Each now gets a 4xx JSON answer at once, and the API keeps answering.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_JSON_DEPTH } from "../../api/body-limits.ts";
import { knownDriverCache } from "../../api/modules/drivers/service.ts";
import { config } from "../../lib/config.ts";
import type { PositionRecord } from "../../lib/position.ts";
import { customer, driver } from "./support/auth.ts";
import { type Harness, startHarness } from "./support/harness.ts";
import { createTestTopic, readTopic, type TestTopic } from "./support/kafka.ts";
import { ORIGIN, offset, seedCustomer, seedDriver, seedRestaurant } from "./support/seed.ts";

let h: Harness;
let customerId: string;
let restaurantId: string;
const nowTst = () => Date.now() / 1000;

beforeAll(async () => {
  h = await startHarness("api_hardening");
  customerId = await seedCustomer(h.sql);
  restaurantId = await seedRestaurant(h.sql);
}, 60_000);
afterAll(() => h.close(), 60_000);

const order = (overrides: Record<string, unknown> = {}) => ({
  customer_id: customerId,
  restaurant_id: restaurantId,
  delivery: offset(ORIGIN, 1000, 500),
  items: [{ name: "Rice", qty: 1, price_cents: 500 }],
  ...overrides,
});
const placeOrder = (body: unknown) => h.call("POST", "/orders", body, { as: customer(customerId) });
const healthy = async () => expect((await h.call("GET", "/health")).status).toBe(200);

describe("bodies that used to stall the API", () => {
  test("an order nested 16k deep (31 KB) answers 400 VALIDATION, without the body, and the API answers next", async () => {
    const deep = `{"customer_id":"${customerId}","items":${"[".repeat(16_000)}${"]".repeat(16_000)}}`;
    const res = await placeOrder(deep);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: { code: "VALIDATION", message: `the body nests deeper than ${MAX_JSON_DEPTH} levels` },
    });
    await healthy();
  });

  test("an order over 64 KB answers 413 PAYLOAD_TOO_LARGE as JSON", async () => {
    const res = await placeOrder(order({ note: "x".repeat(65 * 1024) }));
    expect(res.status).toBe(413);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(res.body.error.code).toBe("PAYLOAD_TOO_LARGE");
    await healthy();
  });

  test("a schema refusal names the field and does not echo the body", async () => {
    const marker = "no-such-number-marker";
    const res = await placeOrder(order({ items: [{ name: "Rice", qty: marker, price_cents: 500 }] }));
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("VALIDATION");
    expect(res.body.error.message).toContain("qty");
    expect(JSON.stringify(res.body)).not.toContain(marker);
  });
});

describe("item names the database cannot store", () => {
  const names: [string, string][] = [
    ["NUL (used to be a 500: PostgreSQL 22P05)", "Rice\u0000"],
    ["BEL", "Ri\u0007ce"],
    ["a newline", "Rice\nand beans"],
    ["DEL", "Rice\u007f"],
  ];
  for (const [what, name] of names) {
    test(`${what} → 400 VALIDATION on items.name`, async () => {
      const res = await placeOrder(order({ items: [{ name, qty: 1, price_cents: 500 }] }));
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("VALIDATION");
      expect(res.body.error.message).toContain("name");
    });
  }

  test("printable Unicode is fine", async () => {
    const res = await placeOrder(order({ items: [{ name: "Phở bò — 牛肉河粉 🍜", qty: 1, price_cents: 900 }] }));
    expect(res.status).toBe(201);
    expect(res.body.items[0].name).toBe("Phở bò — 牛肉河粉 🍜");
  });
});

describe("business limits of an order (422 ORDER_LIMIT)", () => {
  const maxTotal = config().orderMaxTotalCents;
  const maxKm = config().orderMaxDeliveryKm;
  const cases: [string, Record<string, unknown>, number, string | undefined][] = [
    ["a total exactly at the limit", { items: [{ name: "Feast", qty: 1, price_cents: maxTotal }] }, 201, undefined],
    ["a total one cent over", { items: [{ name: "Feast", qty: 1, price_cents: maxTotal + 1 }] }, 422, "cents"],
    [
      "a total over through quantities",
      { items: [{ name: "Bowl", qty: 100, price_cents: Math.ceil(maxTotal / 100) + 1 }] },
      422,
      "cents",
    ],
    ["a delivery point just inside the reach", { delivery: offset(ORIGIN, (maxKm - 0.5) * 1000, 0) }, 201, undefined],
    ["a delivery point beyond the reach", { delivery: offset(ORIGIN, (maxKm + 1) * 1000, 0) }, 422, "km"],
    ["a delivery point on another continent", { delivery: { lat: 48.85, lon: 2.35 } }, 422, "km"],
  ];
  for (const [what, overrides, status, mentions] of cases) {
    test(`${what} → ${status}`, async () => {
      const res = await placeOrder(order(overrides));
      expect(res.status).toBe(status);
      if (mentions) {
        expect(res.body.error.code).toBe("ORDER_LIMIT");
        expect(res.body.error.message).toContain(mentions);
      }
    });
  }

  test("nothing beyond a limit was stored", async () => {
    const [row] = await h.sql<{ n: number }[]>`
      select count(*)::int as n from orders
      where (select sum((i->>'qty')::int * (i->>'price_cents')::int) from jsonb_array_elements(items) i) > ${maxTotal}
         or st_distance(delivery_location, (select location from restaurants where id = ${restaurantId})) > ${maxKm * 1000}`;
    expect(row!.n).toBe(0);
  });

  test("an unknown restaurant or customer is still 404, not a limit", async () => {
    const nowhere = "3f2b8c1d-4e5a-4b6c-9d7e-8f9a0b1c2d3e";
    const noRestaurant = await placeOrder(order({ restaurant_id: nowhere }));
    expect([noRestaurant.status, noRestaurant.body.error.message]).toEqual([404, `restaurant ${nowhere} does not exist`]);
    const noCustomer = await h.call("POST", "/orders", order({ customer_id: nowhere }), { as: customer(nowhere) });
    expect([noCustomer.status, noCustomer.body.error.message]).toEqual([404, `customer ${nowhere} does not exist`]);
  });
});

describe("PATCH /drivers/{id}/location refuses at once what the worker would dead-letter", () => {
  test("an unknown driver → 404 NOT_FOUND (not 202 then DLQ)", async () => {
    const unknown = "5d3c2b1a-0f9e-4d8c-b7a6-958473625140";
    const res = await h.call("PATCH", `/drivers/${unknown}/location`, { lat: 40.7, lon: -73.9, tst: nowTst() }, {
      as: driver(unknown),
    });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("NOT_FOUND");
  });

  const clock: [string, () => Record<string, unknown>, string][] = [
    ["dated 2 minutes ahead (clock skew)", () => ({ tst: nowTst() + 120 }), "future_timestamp"],
    ["dated 29 s ahead (the probe's future fix; the database allows 2 s)", () => ({ tst: nowTst() + 29 }), "future_timestamp"],
    ["dated 2 days ago", () => ({ tst: nowTst() - 2 * 86_400 }), "too_old"],
    ["accurate to 5 km only", () => ({ tst: nowTst(), acc: 5_000 }), "low_accuracy"],
  ];
  for (const [what, fields, reason] of clock) {
    test(`a fix ${what} → 422 POSITION_REJECTED (${reason})`, async () => {
      const id = await seedDriver(h.sql);
      const res = await h.call("PATCH", `/drivers/${id}/location`, { lat: 40.7, lon: -73.9, ...fields() }, {
        as: driver(id),
      });
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe("POSITION_REJECTED");
      expect(res.body.error.message).toStartWith(`${reason}: `);
    });
  }

  test("a batch where every fix fails (shape or clock) is 422, naming the clock's reason", async () => {
    const id = await seedDriver(h.sql);
    const res = await h.call(
      "PATCH",
      `/drivers/${id}/location`,
      [
        { lat: 100, lon: 0, tst: nowTst() },
        { lat: 40.7, lon: -73.9, tst: nowTst() + 3600 },
      ],
      { as: driver(id) },
    );
    expect(res.status).toBe(422);
    expect(res.body.error.message).toStartWith("future_timestamp: ");
  });
});

describe("knownDriverCache (PATCH's memory of drivers that exist)", () => {
  test("holds at most its bound, forgetting the oldest first", () => {
    const cache = knownDriverCache(3);
    for (const id of ["a", "b", "c", "d"]) cache.add(id);
    expect(cache.size).toBe(3);
    expect(["a", "b", "c", "d"].map((id) => cache.has(id))).toEqual([false, true, true, true]);
  });

  test("a driver created after an unknown-driver answer is found at once (misses are not remembered)", async () => {
    const [row] = await h.sql<{ id: string }[]>`select gen_random_uuid()::text as id`;
    const id = row!.id;
    const fix = () => ({ lat: 40.7, lon: -73.9, tst: nowTst() });
    expect((await h.call("PATCH", `/drivers/${id}/location`, fix(), { as: driver(id) })).status).toBe(404);
    await h.sql`insert into drivers (id, name) values (${id}, 'Late')`;
    // Known now: the harness's Kafka is down, so the answer is the send's 503, past the existence check.
    expect((await h.call("PATCH", `/drivers/${id}/location`, fix(), { as: driver(id) })).status).toBe(503);
  });
});

describe("PATCH partial batches keep their contract (real Kafka)", () => {
  let kafka: TestTopic;
  let withKafka: Harness;
  beforeAll(async () => {
    kafka = await createTestTopic("api_hardening");
    withKafka = await startHarness("api_hardening_kafka", { kafka: kafka.kafka, positionsTopic: kafka.topic });
  }, 60_000);
  afterAll(async () => {
    await withKafka?.close();
    await kafka?.drop();
  }, 60_000);

  test("202 with the refused indexes; only the good fixes reach Kafka", async () => {
    const id = await seedDriver(withKafka.sql);
    const t0 = nowTst();
    const res = await withKafka.call(
      "PATCH",
      `/drivers/${id}/location`,
      [
        { lat: 40.75, lon: -73.98, tst: t0 - 2 },
        { lat: 100, lon: -73.98, tst: t0 - 1 }, // shape: the bridge's decoder
        { lat: 40.751, lon: -73.981, tst: t0 + 600 }, // clock: ten minutes ahead
        { lat: 40.752, lon: -73.982, tst: t0, acc: 4_000 }, // accuracy
        { lat: 40.753, lon: -73.983, tst: t0 },
      ],
      { as: driver(id) },
    );
    expect(res.status).toBe(202);
    expect(res.body).toEqual({
      accepted: 2,
      rejected: [
        { index: 1, reason: "invalid_coordinates" },
        { index: 2, reason: "future_timestamp" },
        { index: 3, reason: "low_accuracy" },
      ],
    });
    const records = await readTopic(kafka.topic);
    expect(records.length).toBe(1);
    const record = JSON.parse(records[0]!.value) as PositionRecord;
    expect(record.positions).toEqual([
      { lat: 40.75, lon: -73.98, tst: t0 - 2 },
      { lat: 40.753, lon: -73.983, tst: t0 },
    ]);
  });
});
