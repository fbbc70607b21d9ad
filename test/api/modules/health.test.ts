import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../../../api/app.ts";
import { createTokenService } from "../../../api/auth/tokens.ts";
import { createOrderFeed } from "../../../api/modules/tracking/feed.ts";
import { connectDatabase } from "../../../lib/db.ts";
import { OPS, testAuthConfig } from "../support/auth.ts";
import { type Harness, kafkaDown, startHarness } from "../support/harness.ts";
import { createTestTopic, type TestTopic } from "../support/kafka.ts";
import { waitFor } from "../support/wait.ts";

interface ErrorBody {
  error: { code: string; message: string };
}

let h: Harness;
let kafka: TestTopic;

beforeAll(async () => {
  kafka = await createTestTopic("api_health");
  h = await startHarness("api_health", { kafka: kafka.kafka, positionsTopic: kafka.topic });
}, 60_000);
afterAll(async () => {
  await h.close();
  await kafka.drop();
}, 60_000);

describe("GET /health", () => {
  test("answers while the process runs", async () => {
    expect(await h.call("GET", "/health")).toMatchObject({ status: 200, body: { status: "ok" } });
  });
});

describe("GET /ready", () => {
  test("200 when the database and Kafka answer and the live feed listens", async () => {
    const res = await h.call("GET", "/ready");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ready", checks: { database: "up", kafka: "up", liveFeed: "up" } });
  });

  test("503 when Kafka is not connected", async () => {
    const noKafka = await startHarness("api_health_nokafka");
    try {
      const res = await noKafka.call("GET", "/ready");
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("UPSTREAM_UNAVAILABLE");
      expect(res.body.error.message).toContain("kafka:");
      expect(res.body.error.message).not.toContain("database:");
    } finally {
      await noKafka.close();
    }
  });

  test("503 when the database does not answer", async () => {
    const sql = connectDatabase("postgresql://postgres:postgres@127.0.0.1:1/nowhere", { max: 1 });
    const app = createApp({
      sql,
      kafka: kafka.kafka,
      positionsTopic: kafka.topic,
      feed: createOrderFeed(sql),
      probeTimeoutMs: 1_000,
      auth: testAuthConfig(),
    });
    try {
      const res = await app.handle(new Request("http://localhost/ready"));
      expect(res.status).toBe(503);
      const body = (await res.json()) as ErrorBody;
      expect(body.error.code).toBe("UPSTREAM_UNAVAILABLE");
      expect(body.error.message).toContain("database:");
      // The live feed's LISTEN needs the same database.
      expect(body.error.message).toContain("live feed (LISTEN):");
      expect(body.error.message).not.toContain("kafka:");
    } finally {
      await sql.end({ timeout: 0 });
    }
  });

  test("a database that is down makes data routes 503, not 500", async () => {
    const sql = connectDatabase("postgresql://postgres:postgres@127.0.0.1:1/nowhere", { max: 1 });
    const auth = testAuthConfig();
    const app = createApp({ sql, kafka: kafkaDown(), positionsTopic: "x", feed: createOrderFeed(sql), auth });
    const { token } = await createTokenService(auth).mint(OPS.role, OPS.sub, { ttl: "5m" });
    try {
      const res = await app.handle(
        new Request("http://localhost/track/0f8fad5b-d9cb-469f-a165-70867728950e", {
          headers: { authorization: `Bearer ${token}` },
        }),
      );
      expect(res.status).toBe(503);
      expect(((await res.json()) as ErrorBody).error).toEqual({ code: "UPSTREAM_UNAVAILABLE", message: "the database is unavailable" });
    } finally {
      await sql.end({ timeout: 0 });
    }
  });
});

describe("GET /metrics", () => {
  test("Prometheus text: requests by route pattern and status, latency, live streams, process metrics", async () => {
    await h.call("GET", "/track/0f8fad5b-d9cb-469f-a165-70867728950e", undefined, { as: OPS });
    await h.call("GET", "/track/7c9e6679-7425-40de-944b-e07fc1f90ae7", undefined, { as: OPS });
    await h.call("GET", "/track/not-a-uuid", undefined, { as: OPS });
    await h.call("GET", "/no/such/route");
    // Elysia runs after-response hooks once the response is out, so the counts land a moment later.
    let text = "";
    await waitFor("the requests to be counted", async () => {
      const res = await h.fetch("GET", "/metrics", { as: OPS });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      text = await res.text();
      return text.includes('route="unmatched"');
    });
    expect(text).toContain('http_requests_total{method="GET",route="/track/:order_id",status="404"} 2');
    expect(text).toContain('http_requests_total{method="GET",route="/track/:order_id",status="400"} 1');
    expect(text).toContain('http_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(text).toMatch(/http_request_duration_seconds_bucket\{le="0\.1",method="GET",route="\/track\/:order_id",status="404"\} \d/);
    expect(text).toContain("live_tracking_subscribers 0");
    expect(text).toContain("process_cpu_user_seconds_total");
    expect(text).not.toContain("0f8fad5b"); // ids never become label values
  });
});

describe("OpenAPI", () => {
  test("the document lists every route; the UI is served", async () => {
    const doc = await h.call("GET", "/openapi/json");
    expect(doc.status).toBe(200);
    const paths = Object.keys(doc.body.paths);
    for (const path of [
      "/track/{order_id}",
      "/track/{order_id}/live",
      "/drivers/{driver_id}",
      "/drivers/{driver_id}/location",
      "/drivers/{driver_id}/mqtt-credentials",
      "/orders",
      "/orders/{order_id}",
      "/orders/{order_id}/confirm",
      "/orders/{order_id}/assign",
      "/orders/{order_id}/pickup",
      "/orders/{order_id}/deliver",
      "/orders/{order_id}/cancel",
      "/health",
      "/ready",
      "/metrics",
    ]) {
      expect(paths.some((p) => p.replace(/\/$/, "") === path)).toBe(true);
    }
    // The bearer scheme is declared, required on guarded routes and waived on the open ones.
    expect(doc.body.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer", bearerFormat: "JWT" });
    expect(doc.body.paths["/track/{order_id}"].get.security).toEqual([{ bearer: [] }]);
    expect(doc.body.paths["/health"].get.security).toEqual([]);
    const ui = await h.fetch("GET", "/openapi");
    expect(ui.status).toBe(200);
    expect(ui.headers.get("content-type")).toContain("text/html");
  });
});
