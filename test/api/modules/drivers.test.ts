import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { config } from "../../../lib/config.ts";
import { cellOf, cellToHex } from "../../../lib/h3.ts";
import { MAX_POSITIONS_PER_MESSAGE, type PositionRecord } from "../../../lib/position.ts";
import { applyPositions } from "../../support/positions.ts";
import { driver as asDriver, OPS } from "../support/auth.ts";
import { type Harness, startHarness } from "../support/harness.ts";
import { createTestTopic, readTopic, type TestTopic } from "../support/kafka.ts";
import { ORIGIN, offset, seedDriver } from "../support/seed.ts";

let h: Harness;
let kafka: TestTopic;
let offline: Harness; // the same API with a producer Kafka never saw
const tst = () => Date.now() / 1000;
const KNOWN_DRIVERS = [
  "0f8fad5b-d9cb-469f-a165-70867728950e",
  "7c9e6679-7425-40de-944b-e07fc1f90ae7",
  "5d3c2b1a-0f9e-4d8c-b7a6-958473625140",
] as const;
const seedKnownDrivers = (sql: Harness["sql"]) =>
  sql`insert into drivers ${sql(KNOWN_DRIVERS.map((id) => ({ id, name: "Known" })))}`;

beforeAll(async () => {
  kafka = await createTestTopic("api_drivers");
  h = await startHarness("api_drivers", { kafka: kafka.kafka, positionsTopic: kafka.topic });
  offline = await startHarness("api_drivers_offline");
  // The drivers the PATCH tests report for: an unknown driver is refused at once (404), before Kafka.
  for (const sql of [h.sql, offline.sql]) await seedKnownDrivers(sql);
}, 60_000);
afterAll(async () => {
  await h.close();
  await offline.close();
  await kafka.drop();
}, 60_000);

describe("GET /drivers/{driver_id}", () => {
  test("state and latest position", async () => {
    const at = offset(ORIGIN, 100, 100);
    const id = await seedDriver(h.sql, { name: "Mo", at, positionAgeSeconds: 30 });
    const recordedAt = new Date(Date.now() - 2000);
    await applyPositions(h.sql, [{ driverId: id, ...at, recordedAt, speedKmh: 21, headingDeg: 90, accuracyM: 4, batteryPct: 77 }]);
    const res = await h.call("GET", `/drivers/${id}`, undefined, { as: asDriver(id) });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id,
      name: "Mo",
      vehicle: "scooter",
      state: "available",
      state_since: expect.any(String),
      current_order_id: null,
      position: {
        lat: at.lat,
        lon: at.lon,
        h3: cellToHex(cellOf(at.lat, at.lon, config().h3Resolution)),
        recorded_at: recordedAt.toISOString(),
        received_at: expect.any(String),
        age_seconds: expect.any(Number),
        speed_kmh: 21,
        heading_deg: 90,
        accuracy_m: 4,
        battery_pct: 77,
      },
    });
    expect(res.body.position.age_seconds).toBeGreaterThanOrEqual(2);
  });

  test("a driver who never reported: offline, no position", async () => {
    const withState = await seedDriver(h.sql, { name: "New" });
    expect((await h.call("GET", `/drivers/${withState}`, undefined, { as: OPS })).body).toMatchObject({ state: "offline", position: null });

    const [bare] = await h.sql<{ id: string }[]>`insert into drivers (name) values ('No state') returning id`;
    const res = await h.call("GET", `/drivers/${bare!.id}`, undefined, { as: OPS });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: "offline", state_since: null, position: null });
  });

  test("404 unknown, 400 INVALID_ID for a non-UUID", async () => {
    const unknown = await h.call("GET", "/drivers/3f2b8c1d-4e5a-4b6c-9d7e-8f9a0b1c2d3e", undefined, { as: OPS });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("NOT_FOUND");
    const bad = await h.call("GET", "/drivers/driver-7", undefined, { as: OPS });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("INVALID_ID");
  });
});

describe("PATCH /drivers/{driver_id}/location", () => {
  test("202 once Kafka has ONE record per request, keyed by driver, in the bridge's format", async () => {
    const [driverA, driverB] = KNOWN_DRIVERS;
    const t0 = tst();
    const before = Date.now();

    const single = await h.call("PATCH", `/drivers/${driverA}/location`, {
      lat: 40.7411,
      lon: -73.9897,
      tst: t0,
      acc: 5,
      vel: 32,
      cog: 180,
      batt: 77,
      extra: "ignored",
    }, { as: asDriver(driverA) });
    expect(single.status).toBe(202);
    expect(single.body).toEqual({ accepted: 1, rejected: [] });

    const batch = await h.call("PATCH", `/drivers/${driverB.toUpperCase()}/location`, [
      { lat: 40.75, lon: -73.98, tst: t0 },
      { lat: 100, lon: -73.98, tst: t0 + 1 },
      { lat: 40.751, lon: -73.981, tst: t0 + 2, acc: null },
      { lat: 40.752, lon: -73.982 },
    ], { as: asDriver(driverB) });
    expect(batch.status).toBe(202);
    expect(batch.body).toEqual({
      accepted: 2,
      rejected: [
        { index: 1, reason: "invalid_coordinates" },
        { index: 3, reason: "invalid_timestamp" },
      ],
    });

    // kcat reads to the end of the topic: exactly what the broker holds, one record per request.
    const records = await readTopic(kafka.topic);
    expect(records.length).toBe(2);
    const [first, second] = records.map((r) => ({ key: r.key, value: JSON.parse(r.value) as PositionRecord }));
    expect(first?.key).toBe(driverA);
    expect(first?.value).toEqual({
      v: 1,
      driver_id: driverA,
      received_ms: expect.any(Number),
      positions: [{ lat: 40.7411, lon: -73.9897, tst: t0, acc: 5, vel: 32, cog: 180, batt: 77 }],
    });
    expect(first!.value.received_ms).toBeGreaterThanOrEqual(before);
    expect(first!.value.received_ms).toBeLessThanOrEqual(Date.now());
    // The id is normalised to lower case, so one driver's positions always share one key (one partition).
    expect(second?.key).toBe(driverB);
    expect(second?.value.driver_id).toBe(driverB);
    expect(second?.value.positions).toEqual([
      { lat: 40.75, lon: -73.98, tst: t0 },
      { lat: 40.751, lon: -73.981, tst: t0 + 2 },
    ]);
  });

  const driver = KNOWN_DRIVERS[2];
  const invalid: [string, string, string][] = [
    ["malformed JSON", '{"lat": 40.7,', "malformed_json"],
    ["an empty body", "", "malformed_json"],
    ["an empty array", "[]", "invalid_shape"],
    ["a JSON string", '"here"', "invalid_shape"],
    ["null", "null", "invalid_shape"],
    ["no valid position", JSON.stringify([{ lat: 91, lon: 0, tst: tst() }, { lat: 1, lon: 2 }]), "invalid_coordinates"],
    ["a string latitude", JSON.stringify({ lat: "40.7", lon: -73.9, tst: tst() }), "invalid_coordinates"],
    ["a negative timestamp", JSON.stringify({ lat: 40.7, lon: -73.9, tst: -5 }), "invalid_timestamp"],
    ["a non-numeric accuracy", JSON.stringify({ lat: 40.7, lon: -73.9, tst: tst(), acc: "good" }), "invalid_shape"],
    [
      "too many positions",
      JSON.stringify(Array.from({ length: MAX_POSITIONS_PER_MESSAGE + 1 }, () => ({ lat: 1, lon: 1, tst: tst() }))),
      "batch_too_large",
    ],
  ];
  for (const [what, body, reason] of invalid) {
    test(`400 INVALID_POSITION (${reason}) for ${what}`, async () => {
      const res = await h.call("PATCH", `/drivers/${driver}/location`, body, { as: asDriver(driver) });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("INVALID_POSITION");
      expect(res.body.error.message).toStartWith(`${reason}: `);
    });
  }

  test("400 INVALID_ID for a non-UUID driver", async () => {
    const res = await h.call("PATCH", "/drivers/abc/location", { lat: 1, lon: 1, tst: tst() }, { as: asDriver(driver) });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("INVALID_ID");
  });

  test("nothing reached Kafka for the refused requests", async () => {
    expect((await readTopic(kafka.topic)).length).toBe(2);
  });

  test("503 UPSTREAM_UNAVAILABLE when Kafka does not take the record", async () => {
    const res = await offline.call("PATCH", `/drivers/${driver}/location`, { lat: 40.7, lon: -73.9, tst: tst() }, {
      as: asDriver(driver),
    });
    expect(res.status).toBe(503);
    expect(res.body.error).toEqual({ code: "UPSTREAM_UNAVAILABLE", message: "Kafka did not take the positions; retry" });
  });

  test("a Kafka that never answers is a 503 after the send timeout, not a hung request", async () => {
    const silent = await startHarness("api_drivers_silent", {
      kafka: { send: () => new Promise(() => {}), probe: () => new Promise(() => {}) },
      kafkaSendTimeoutMs: 200,
    });
    await seedKnownDrivers(silent.sql);
    try {
      const started = Date.now();
      const res = await silent.call("PATCH", `/drivers/${driver}/location`, { lat: 40.7, lon: -73.9, tst: tst() }, {
        as: asDriver(driver),
      });
      expect(res.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await silent.close();
    }
  });
});
