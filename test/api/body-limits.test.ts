/** api/body-limits.ts: depth and size refused before parsing, through the app's own error handler. */
import { describe, expect, test } from "bun:test";
import { Elysia, t } from "elysia";
import {
  DEFAULT_MAX_BODY_BYTES,
  jsonDepthExceeds,
  LOCATION_MAX_BODY_BYTES,
  MAX_JSON_DEPTH,
  readBodyText,
} from "../../api/body-limits.ts";
import { errorHandler } from "../../api/errors.ts";

const nested = (depth: number, open = "[", close = "]") => open.repeat(depth) + close.repeat(depth);

describe("jsonDepthExceeds", () => {
  const table: [string, string, boolean][] = [
    ["flat object", '{"a":1,"b":[1,2,3]}', false],
    ["exactly the limit", nested(MAX_JSON_DEPTH), false],
    ["one over the limit", nested(MAX_JSON_DEPTH + 1), true],
    ["objects count too", '{"a":'.repeat(MAX_JSON_DEPTH + 1) + "1" + "}".repeat(MAX_JSON_DEPTH + 1), true],
    ["brackets inside strings do not count", JSON.stringify({ name: "[".repeat(1000) }), false],
    ["escaped quotes do not end a string", JSON.stringify({ name: `\\"${"{".repeat(1000)}` }), false],
    ["16k deep (the probe)", nested(16_000), true],
    ["200k deep (the probe that never answered)", nested(200_000), true],
  ];
  for (const [name, text, exceeds] of table) {
    test(`${name} → ${exceeds ? "refused" : "accepted"}`, () => expect(jsonDepthExceeds(text)).toBe(exceeds));
  }
});

describe("readBodyText", () => {
  const chunked = (parts: string[]) =>
    new Request("http://localhost/", {
      method: "POST",
      body: new ReadableStream({
        start(controller) {
          for (const part of parts) controller.enqueue(new TextEncoder().encode(part));
          controller.close();
        },
      }),
    });

  test("reads a body within the limit, multi-byte characters intact", async () => {
    expect(await readBodyText(chunked(["caf", "é ", "ok"]), 100)).toBe("café ok");
  });

  test("a declared Content-Length over the limit is refused before reading", async () => {
    const request = new Request("http://localhost/", {
      method: "POST",
      body: "x".repeat(10),
      headers: { "content-length": "10" },
    });
    await expect(readBodyText(request, 5)).rejects.toMatchObject({ code: "PAYLOAD_TOO_LARGE", status: 413 });
  });

  test("a chunked body is refused as soon as it passes the limit", async () => {
    await expect(readBodyText(chunked(["x".repeat(4), "x".repeat(4)]), 6)).rejects.toMatchObject({
      code: "PAYLOAD_TOO_LARGE",
    });
  });
});

describe("the bodyLimits parse hook (through errorHandler)", () => {
  const app = new Elysia()
    .use(errorHandler)
    .post("/things", ({ body }) => ({ got: body }), { body: t.Object({ items: t.Array(t.Unknown()) }) })
    .post("/things/:id/poke", () => ({ poked: true }))
    .patch("/drivers/:driver_id/location", ({ body }) => ({ text: body }), { parse: "text" })
    .get("/health", () => ({ status: "ok" }));

  const send = async (method: string, path: string, body?: string, contentType = "application/json") => {
    const headers = body === undefined ? undefined : { "content-type": contentType };
    const res = await app.handle(new Request(`http://localhost${path}`, { method, body, headers }));
    const text = await res.text();
    return { status: res.status, type: res.headers.get("content-type") ?? "", text, json: () => JSON.parse(text) };
  };

  test("16k- and 30k-deep bodies answer 400 VALIDATION without echoing the body; the app answers next", async () => {
    for (const depth of [16_000, 30_000]) {
      const res = await send("POST", "/things", `{"items":${nested(depth)}}`);
      expect(res.status).toBe(400);
      expect(res.json()).toEqual({
        error: { code: "VALIDATION", message: `the body nests deeper than ${MAX_JSON_DEPTH} levels` },
      });
      expect((await send("GET", "/health")).status).toBe(200);
    }
  });

  test("200k deep is 400 KB: refused by its size (413) before a byte is parsed; the app answers next", async () => {
    const res = await send("POST", "/things", `{"items":${nested(200_000)}}`);
    expect([res.status, res.json().error.code]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
    expect((await send("GET", "/health")).status).toBe(200);
  });

  test("a body over the route's limit answers 413 JSON", async () => {
    const res = await send("POST", "/things", JSON.stringify({ items: ["x".repeat(DEFAULT_MAX_BODY_BYTES)] }));
    expect(res.status).toBe(413);
    expect(res.type).toContain("application/json");
    expect(res.json().error.code).toBe("PAYLOAD_TOO_LARGE");
  });

  test("the location route gets its raw text, with its own (larger) limit and the same depth rule", async () => {
    const batch = JSON.stringify([{ lat: 1, lon: 2, tst: 3 }]);
    expect((await send("PATCH", "/drivers/x/location", batch)).json()).toEqual({ text: batch });
    const big = JSON.stringify([{ pad: "x".repeat(DEFAULT_MAX_BODY_BYTES) }]); // over orders' limit, under location's
    expect((await send("PATCH", "/drivers/x/location", big)).status).toBe(200);
    const tooBig = JSON.stringify([{ pad: "x".repeat(LOCATION_MAX_BODY_BYTES) }]);
    expect((await send("PATCH", "/drivers/x/location", tooBig)).status).toBe(413);
    expect((await send("PATCH", "/drivers/x/location", nested(50_000))).json().error.code).toBe("VALIDATION");
  });

  test("malformed JSON is 400 VALIDATION; a non-JSON body is 415; no body is no body", async () => {
    const malformed = await send("POST", "/things", '{"items": [1,');
    expect([malformed.status, malformed.json().error.code]).toEqual([400, "VALIDATION"]);
    const form = await send("POST", "/things", "items=1", "application/x-www-form-urlencoded");
    expect([form.status, form.json().error.code]).toEqual([415, "UNSUPPORTED_MEDIA_TYPE"]);
    expect((await send("POST", "/things/1/poke")).json()).toEqual({ poked: true });
  });

  test("a schema refusal names the field and never echoes the value", async () => {
    const secret = "s3cr3t-value-that-must-not-come-back";
    const res = await send("POST", "/things", JSON.stringify({ items: secret }));
    expect(res.status).toBe(400);
    expect(res.json().error.code).toBe("VALIDATION");
    expect(res.text).not.toContain(secret);
  });

  test("an unknown route and a wrong method are 404 JSON", async () => {
    for (const [method, path] of [
      ["GET", "/nowhere"],
      ["DELETE", "/health"],
      ["GET", "/things"],
    ] as const) {
      const res = await send(method, path);
      expect([res.status, res.json().error.code]).toEqual([404, "NOT_FOUND"]);
    }
  });
});
