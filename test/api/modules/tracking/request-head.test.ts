import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { headEnd, parseRequestHead } from "../../../../api/modules/tracking/request-head.ts";
import { AppError } from "../../../../lib/errors.ts";

describe("parseRequestHead", () => {
  test("a plain request: method, path, query and headers (names in lower case, values trimmed)", () => {
    const head = parseRequestHead("GET /track/abc/live?token=t.k.n&x=1 HTTP/1.1\r\nHost: a\r\nLast-Event-ID:  assigned.5 \r\n\r\n");
    expect(head.method).toBe("GET");
    expect(head.path).toBe("/track/abc/live");
    expect(head.query.get("token")).toBe("t.k.n");
    expect(Object.fromEntries(head.headers)).toEqual({ host: "a", "last-event-id": "assigned.5" });
  });

  test("a repeated list field is joined; HTTP/1.0 needs no Host", () => {
    const head = parseRequestHead("GET / HTTP/1.0\r\nAccept: a\r\naccept: b\r\n\r\n");
    expect(head.headers.get("accept")).toBe("a, b");
  });

  const refused: [string, string, string][] = [
    ["an incomplete head", "GET / HTTP/1.1\r\nHost: a\r\n", "MALFORMED_REQUEST"],
    ["a request line of two parts", "GET /\r\nHost: a\r\n\r\n", "MALFORMED_REQUEST"],
    ["a request line of four parts", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", "MALFORMED_REQUEST"],
    ["a lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", "MALFORMED_REQUEST"],
    ["an absolute-form target", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "MALFORMED_REQUEST"],
    ["a space in the target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "MALFORMED_REQUEST"],
    ["another version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP_VERSION_NOT_SUPPORTED"],
    ["no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", "MALFORMED_REQUEST"],
    ["two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "MALFORMED_REQUEST"],
    ["two Authorization headers", "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: x\r\nAuthorization: y\r\n\r\n", "MALFORMED_REQUEST"],
    ["whitespace before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "MALFORMED_REQUEST"],
    ["a folded line", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", "MALFORMED_REQUEST"],
    ["a line without a colon", "GET / HTTP/1.1\r\nHost: a\r\nnonsense\r\n\r\n", "MALFORMED_REQUEST"],
    ["a control character in a value", "GET / HTTP/1.1\r\nHost: a\u0000b\r\n\r\n", "MALFORMED_REQUEST"],
    ["a body announced", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", "MALFORMED_REQUEST"],
    ["chunked input", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "MALFORMED_REQUEST"],
  ];
  test.each(refused)("refuses %s", (_, text, code) => {
    expect(() => parseRequestHead(text)).toThrow(expect.objectContaining({ code }));
  });

  test("any input either parses or is refused with a code: never another exception", () => {
    const bytes = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 200 });
    const plausible = fc
      .tuple(fc.constantFrom("GET", "POST", "get", ""), bytes, fc.array(fc.tuple(bytes, bytes), { maxLength: 5 }))
      .map(([m, target, fields]) => `${m} /${target} HTTP/1.1\r\n${fields.map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`);
    fc.assert(
      fc.property(fc.oneof(bytes.map((b) => `${b}\r\n\r\n`), plausible), (text) => {
        try {
          parseRequestHead(text);
        } catch (error) {
          expect(error).toBeInstanceOf(AppError);
        }
      }),
      { numRuns: 2_000 },
    );
  });
});

describe("headEnd", () => {
  test.each([
    ["GET / HTTP/1.1\r\nHost: a\r\n", -1],
    ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27],
    ["GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 27],
  ] as const)("%j ends at %d", (text, end) => {
    expect(headEnd(text)).toBe(end);
  });
});
