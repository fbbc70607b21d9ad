/**
 * Request bodies are read and parsed here, once, with limits that answer before the cost grows: a per-route size
 * (413 PAYLOAD_TOO_LARGE, from Content-Length before reading a byte, else while streaming) and a nesting depth
 * counted over the raw text before JSON.parse (400 VALIDATION). A probe showed why: a 31 KB body nested 16k deep
 * stalled the API for 2.4 s and 300 MB in schema validation, and 200k levels never answered. Bun's own
 * maxRequestBodySize (api/server.ts) stays the outer bound.
 */
import { Elysia } from "elysia";
import { AppError } from "../lib/errors.ts";
import { MAX_POSITIONS_PER_MESSAGE } from "../lib/position.ts";

/** No legitimate body of this API nests deeper than 3 (an order's items); 32 leaves room and stops the attack. */
export const MAX_JSON_DEPTH = 32;
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** A full batch of positions with every optional field and generous formatting (~110 bytes compact each). */
export const LOCATION_MAX_BODY_BYTES = MAX_POSITIONS_PER_MESSAGE * 256;

/** Routes whose handler takes the raw text (PATCH location hands it to the bridge's own decoder). */
const TEXT_ROUTES: Record<string, number> = {
  "/drivers/:driver_id/location": LOCATION_MAX_BODY_BYTES,
};

const OPEN_BRACKET = [0x5b, 0x7b]; // [ {
const CLOSE_BRACKET = [0x5d, 0x7d]; // ] }
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Whether the JSON text nests deeper than `max`: brackets counted outside strings, one pass, no allocation. It does
 * not validate JSON (JSON.parse does that next); it only bounds what JSON.parse and the validator will be given.
 */
export function jsonDepthExceeds(text: string, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACKET[0] || c === OPEN_BRACKET[1]) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACKET[0] || c === CLOSE_BRACKET[1]) {
      depth--;
    }
  }
  return false;
}

const tooLarge = (limit: number) =>
  new AppError("PAYLOAD_TOO_LARGE", `the body is larger than this route accepts (${limit} bytes)`);

/** The body as text, refusing it as soon as it is known to be over `limit` bytes. */
export async function readBodyText(request: Request, limit: number): Promise<string> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Chunked bodies have no Content-Length: count while reading and stop at the limit.
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size).toString("utf8");
}

const isJson = (contentType: string) =>
  contentType === "" || contentType === "application/json" || contentType.endsWith("+json");

/** The JSON value of a body text, or a 400 VALIDATION that never echoes the body. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === "") return undefined;
  if (jsonDepthExceeds(text)) throw new AppError("VALIDATION", `the body nests deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text);
  } catch {
    throw new AppError("VALIDATION", "the body is not valid JSON");
  }
}

/**
 * Global parse hook: runs before any route's own parser (Elysia runs inherited parse hooks first), so every body
 * of every route goes through these limits. Errors thrown here reach onError wrapped in Elysia's ParseError; the
 * error handler unwraps them (api/errors.ts).
 */
export const bodyLimits = new Elysia({ name: "body-limits" }).onParse(
  { as: "global" },
  async ({ request, route, contentType }) => {
    const textLimit = TEXT_ROUTES[route];
    if (textLimit !== undefined) {
      const text = await readBodyText(request, textLimit);
      if (jsonDepthExceeds(text)) throw new AppError("VALIDATION", `the body nests deeper than ${MAX_JSON_DEPTH} levels`);
      return text;
    }
    // Nothing sent (e.g. POST /orders/{id}/confirm): no content type to judge.
    if (!request.body || request.headers.get("content-length") === "0") return "";
    if (!isJson(contentType.toLowerCase())) {
      throw new AppError("UNSUPPORTED_MEDIA_TYPE", `bodies are application/json, not ${contentType}`);
    }
    const text = await readBodyText(request, DEFAULT_MAX_BODY_BYTES);
    // "" is a body that was there and empty: undefined would let Elysia's own parser read the spent stream.
    return parseJsonBody(text) ?? "";
  },
);
