/** `bun api/server.ts` as a real process: it listens, becomes ready, streams, and drains on SIGTERM. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTokenService } from "../../api/auth/tokens.ts";
import { authConfig } from "../../lib/config.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { freePort } from "./support/server-process.ts";
import { sseReader } from "./support/sse.ts";
import { seedCustomer, seedRestaurant } from "./support/seed.ts";
import { waitFor } from "./support/wait.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await freshDatabase("api_server");
});
afterAll(() => db.drop());

describe("api/server.ts", () => {
  test("listens on API_PORT, is ready with the database and Kafka, and stops cleanly on SIGTERM", async () => {
    const port = await freePort();
    const root = new URL("../../", import.meta.url).pathname;
    const proc = Bun.spawn(["bun", "api/server.ts"], {
      cwd: root,
      env: { ...process.env, API_PORT: String(port), DATABASE_URL: db.url },
      stdout: "pipe",
      stderr: "pipe",
    });
    let output = "";
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) output += new TextDecoder().decode(chunk);
    };
    void collect(proc.stdout);
    void collect(proc.stderr);
    const base = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        "GET /ready to answer 200",
        async () => (await fetch(`${base}/ready`).catch(() => undefined))?.status === 200,
        30_000,
      );
      expect(output).toContain(`listening on http://127.0.0.1:`); // API_HOST's default: loopback only
      expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: "ok" });

      // An order, and a live stream open on it when the signal comes.
      const customerId = await seedCustomer(db.sql);
      const restaurantId = await seedRestaurant(db.sql);
      // A customer token from the IdP stand-in (the same secret the stack gave the server).
      const { token } = await createTokenService(authConfig()).mint("customer", customerId, { ttl: "5m" });
      const created = await fetch(`${base}/orders`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({
          customer_id: customerId,
          restaurant_id: restaurantId,
          delivery: { lat: 40.74, lon: -73.99 },
          items: [{ name: "Rice", qty: 1, price_cents: 500 }],
        }),
      });
      expect(created.status).toBe(201);
      const { tracking } = (await created.json()) as { id: string; tracking: { live_url: string } };
      // The shareable link as a browser's EventSource opens it: the token in the query, no headers.
      const live = sseReader(await fetch(`${base}${tracking.live_url}`));
      expect((await live.nextEvent())?.event).toBe("track");

      proc.kill("SIGTERM");
      expect(await live.next()).toBeUndefined(); // the stream was ended, not cut
      expect(await proc.exited).toBe(0);
      expect(output).toContain("SIGTERM: draining");
      expect(output).toContain("stopped");
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }, 60_000);

  test("refuses to start without AUTH_TOKEN_SECRET, naming it", async () => {
    const root = new URL("../../", import.meta.url).pathname;
    const env: Record<string, string | undefined> = { ...process.env, API_PORT: "0", DATABASE_URL: db.url };
    delete env.AUTH_TOKEN_SECRET;
    const proc = Bun.spawn(["bun", "api/server.ts"], { cwd: root, env, stdout: "pipe", stderr: "pipe" });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(code).not.toBe(0);
    expect(stderr).toContain("AUTH_TOKEN_SECRET: missing");
  }, 60_000);
});
