import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Harness, startHarness } from "./support/harness.ts";

let h: Harness;
beforeAll(async () => {
  h = await startHarness("api_app");
});
afterAll(() => h.close());

describe("createApp", () => {
  test("an unknown route is a JSON 404", async () => {
    const res = await h.call("GET", "/nothing/here");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(res.body).toEqual({ error: { code: "NOT_FOUND", message: "no such route" } });
  });

  test("a method a route does not have is a JSON 404", async () => {
    const res = await h.call("DELETE", "/health");
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("NOT_FOUND");
  });

  test("bad input is never a 500: every error answer has the one shape", async () => {
    const cases: [string, string, unknown][] = [
      ["POST", "/orders", "{{{"],
      ["POST", "/orders", "null"],
      ["POST", "/orders", '"text"'],
      ["POST", "/orders", { customer_id: 1, restaurant_id: true, delivery: [], items: {} }],
      ["POST", "/orders", { customer_id: "x".repeat(10_000) }],
      ["PATCH", "/drivers/0f8fad5b-d9cb-469f-a165-70867728950e/location", "\u0000\u0001"],
      ["GET", "/track/%E0%A4%A", undefined],
      ["GET", "/drivers/..%2F..%2Fetc", undefined],
      ["POST", "/orders/0f8fad5b-d9cb-469f-a165-70867728950e/confirm", "{bad"],
    ];
    for (const [method, path, body] of cases) {
      const res = await h.call(method, path, body);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(Object.keys(res.body)).toEqual(["error"]);
      expect(Object.keys(res.body.error).sort()).toEqual(["code", "message"]);
    }
  });

  test("validation messages say where the problem is", async () => {
    const res = await h.call("POST", "/orders", {
      customer_id: "0f8fad5b-d9cb-469f-a165-70867728950e",
      restaurant_id: "0f8fad5b-d9cb-469f-a165-70867728950e",
      delivery: { lat: 95, lon: 0 },
      items: [{ name: "x", qty: 1, price_cents: 1 }],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain("body.delivery.lat");
  });
});
