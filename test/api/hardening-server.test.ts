/**
 * `bun api/server.ts` as a real process, spoken to over real sockets: production mode whatever NODE_ENV it inherits,
 * the probe's deep body refused at once, and what Bun itself answers before Elysia sees a request.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { type ApiProcess, startApiProcess } from "./support/server-process.ts";

let db: TestDatabase;
let api: ApiProcess;
const base = () => api.base;

/** One request written as raw bytes; resolves with everything the server sent back until it closed. */
function rawExchange(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    Bun.connect({
      hostname: "127.0.0.1",
      port: api.port,
      socket: {
        open: (socket) => void socket.write(request),
        data: (_socket, chunk) => void (answer += new TextDecoder().decode(chunk)),
        close: () => resolve(answer),
        end: (socket) => void socket.end(),
        error: (_socket, error) => reject(error),
      },
    }).catch(reject);
  });
}

const statusLine = (answer: string) => answer.split("\r\n", 1)[0];
const bodyOf = (answer: string) => answer.slice(answer.indexOf("\r\n\r\n") + 4);

beforeAll(async () => {
  db = await freshDatabase("api_hardening_server");
  // bun test runs with NODE_ENV=test: the server must switch itself to production anyway.
  api = await startApiProcess({ NODE_ENV: "test", DATABASE_URL: db.url });
}, 60_000);

afterAll(async () => {
  await api?.stop();
  await db.drop();
}, 60_000);

const healthy = async () => expect((await fetch(`${base()}/health`)).status).toBe(200);

describe("api/server.ts hardening", () => {
  test("runs Elysia in production mode although it inherited NODE_ENV=test", () => {
    expect(api.output()).toContain("(production mode");
    expect(api.output()).toContain("NODE_ENV=test replaced by production");
  });

  test("the probe's 16k-deep order answers 400 JSON, and the API answers right after", async () => {
    const res = await fetch(`${base()}/orders`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: `{"items":${"[".repeat(16_000)}${"]".repeat(16_000)}}`,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("VALIDATION");
    await healthy();
  });

  test("a 200 KB order is refused by its declared length with a JSON 413 (Elysia's limit, under Bun's)", async () => {
    const answer = await rawExchange(
      `POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n` +
        "x".repeat(200_000),
    );
    expect(statusLine(answer)).toStartWith("HTTP/1.1 413 ");
    expect(answer.toLowerCase()).toContain("content-type: application/json");
    expect(JSON.parse(bodyOf(answer)).error.code).toBe("PAYLOAD_TOO_LARGE");
    await healthy();
  });

  test("unknown routes and wrong methods are 404 JSON", async () => {
    for (const [method, path] of [
      ["GET", "/no-such-route"],
      ["PUT", "/health"],
    ]) {
      const res = await fetch(`${base()}${path}`, { method });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("NOT_FOUND");
    }
  });

  /**
   * Bun answers these itself, from its HTTP parser, before any JavaScript runs: no hook (Bun.serve's `error` is not
   * called for them) can give them a body. Pinned here so a Bun upgrade that changes them is noticed; the JSON
   * answers above cover every body between Elysia's per-route limits and Bun's 1 MB outer bound.
   */
  const bunOwn: [string, string, string][] = [
    ["a malformed request line", "GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"],
    [
      "a declared body over Bun's 1 MB bound",
      "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n",
      "HTTP/1.1 413 Request Entity Too Large",
    ],
    [
      "headers over Bun's limit",
      `GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ${"a".repeat(100_000)}\r\n\r\n`,
      "HTTP/1.1 431 Request Header Fields Too Large",
    ],
  ];
  for (const [what, request, expected] of bunOwn) {
    test(`Bun's own answer to ${what}: ${expected.slice(9)}, and the API answers right after`, async () => {
      const answer = await rawExchange(request);
      expect(statusLine(answer)).toBe(expected);
      await healthy();
    });
  }
});
