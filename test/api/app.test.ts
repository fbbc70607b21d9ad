import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Caller, customer, driver, OPS, restaurant } from "./support/auth.ts";
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
    // Each as a caller the route admits, so what is tested is the input, not the missing token.
    const someone = "0f8fad5b-d9cb-469f-a165-70867728950e";
    const cases: [string, string, unknown, Caller][] = [
      ["POST", "/orders", "{{{", customer(someone)],
      ["POST", "/orders", "null", customer(someone)],
      ["POST", "/orders", '"text"', customer(someone)],
      ["POST", "/orders", { customer_id: 1, restaurant_id: true, delivery: [], items: {} }, customer(someone)],
      ["POST", "/orders", { customer_id: "x".repeat(10_000) }, customer(someone)],
      ["PATCH", `/drivers/${someone}/location`, "\u0000\u0001", driver(someone)],
      ["GET", "/track/%E0%A4%A", undefined, OPS],
      ["GET", "/drivers/..%2F..%2Fetc", undefined, OPS],
      ["POST", `/orders/${someone}/confirm`, "{bad", restaurant(someone)],
    ];
    for (const [method, path, body, as] of cases) {
      const res = await h.call(method, path, body, { as });
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
    }, { as: customer("0f8fad5b-d9cb-469f-a165-70867728950e") });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain("body.delivery.lat");
  });
});
