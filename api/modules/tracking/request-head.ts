/**
 * The head of one HTTP/1.1 request, as the live socket server (live-socket.ts) needs it: the request line and the
 * header fields, strictly. It serves a single GET route, so there is no body, no chunked input, no pipelining: the
 * first blank line ends what the server reads. Anything malformed is refused with a code, never guessed at
 * (RFC 9112: no whitespace before a colon, no obsolete line folding, one Host).
 */
import { AppError } from "../../../lib/errors.ts";

/** The most a head may take: Bun.serve's own default is 16 KB; a stream's request is a URL with a token. */
export const MAX_HEAD_BYTES = 8 * 1024;

export interface RequestHead {
  method: string;
  /** The path, percent-decoding left to the route (ids are plain ASCII). */
  path: string;
  query: URLSearchParams;
  /** Field names in lower case; a repeated field's values joined by ", " (RFC 9110 5.3). */
  headers: Map<string, string>;
}

/** Where the head ends (the index just past its blank line), or -1 while it is incomplete. */
export function headEnd(received: string): number {
  const end = received.indexOf("\r\n\r\n");
  return end === -1 ? -1 : end + 4;
}

const METHOD = /^[A-Z]{1,16}$/;
const TARGET = /^\/[\x21-\x7e]*$/; // origin-form: a path and query of visible ASCII
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/; // RFC 9110 token
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/; // no control characters (latin1: one char per byte)
/** Fields that must not repeat: two bearer tokens or two hosts are an attack or a bug, never a list. */
const SINGLE = new Set(["authorization", "host", "last-event-id", "content-length"]);

const malformed = (message: string) => new AppError("MALFORMED_REQUEST", message);

/**
 * Parses a complete head (up to and including its blank line; latin1, one char per byte). Throws MALFORMED_REQUEST
 * (400) for anything that is not a plain HTTP/1.1 request head, HTTP_VERSION_NOT_SUPPORTED (505) for another version.
 */
export function parseRequestHead(head: string): RequestHead {
  const lines = head.split("\r\n");
  // The head ends with "\r\n\r\n": the last two entries are empty.
  if (lines.length < 3 || lines.at(-1) !== "" || lines.at(-2) !== "") throw malformed("the request head is incomplete");
  const [method, target, version, ...extra] = lines[0]!.split(" ");
  if (extra.length > 0 || !method || !target || !version) throw malformed("the request line is not `METHOD target HTTP/1.1`");
  if (!METHOD.test(method)) throw malformed("the request method is not a token");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    throw new AppError("HTTP_VERSION_NOT_SUPPORTED", `${version.slice(0, 16)} is not supported (HTTP/1.1 only)`);
  }
  if (!TARGET.test(target)) throw malformed("the request target is not a path");

  const headers = new Map<string, string>();
  for (const line of lines.slice(1, -2)) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed("a header line has no field name");
    const name = line.slice(0, colon);
    if (!FIELD_NAME.test(name)) throw malformed("a header field name is not a token (or is folded)");
    const value = line.slice(colon + 1).trim();
    if (!FIELD_VALUE.test(value)) throw malformed(`the ${name.toLowerCase()} header holds a control character`);
    const key = name.toLowerCase();
    const previous = headers.get(key);
    if (previous !== undefined && SINGLE.has(key)) throw malformed(`the ${key} header is repeated`);
    headers.set(key, previous === undefined ? value : `${previous}, ${value}`);
  }
  if (version === "HTTP/1.1" && !headers.has("host")) throw malformed("an HTTP/1.1 request needs a Host header");
  if (headers.has("transfer-encoding") || (headers.get("content-length") ?? "0") !== "0") {
    throw malformed("this server takes no request body");
  }

  const question = target.indexOf("?");
  const path = question === -1 ? target : target.slice(0, question);
  const query = new URLSearchParams(question === -1 ? "" : target.slice(question + 1));
  return { method, path, query, headers };
}
