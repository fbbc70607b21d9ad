/**
 * The closed lists of error codes the system speaks: why a position was rejected (the DLQ `reason` header and the
 * `positions_rejected_total{reason}` metric) and what an HTTP error says. Every error keeps its cause and says
 * whether retrying can help.
 */

export const REJECT_REASONS = [
  "malformed_json", // payload is not JSON
  "invalid_shape", // JSON, but not a position object or array of them
  "invalid_driver_id", // topic or field driver id is not a UUID
  "invalid_coordinates", // lat/lon missing, NaN or out of range
  "invalid_timestamp", // tst missing or not a number
  "future_timestamp", // device clock ahead of ours by more than the allowed skew
  "too_old", // older than the accepted age
  "low_accuracy", // reported accuracy worse than the limit
  "impossible_speed", // implied speed from the driver's previous position is not physical
  "unknown_driver", // driver id not in the database
  "batch_too_large", // one phone sent more positions in one message than allowed
  "out_of_order", // older than the driver's current position and never seen before (a late position)
  "duplicate", // already applied (a redelivery): counted, never sent to the DLQ
  "rejected_by_database", // the database refused the value itself (isolated from its batch, so the rest applied)
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export const ERROR_CODES = {
  CONFIG_INVALID: { status: 500, retriable: false },
  VALIDATION: { status: 400, retriable: false },
  INVALID_ID: { status: 400, retriable: false },
  INVALID_POSITION: { status: 400, retriable: false },
  UNAUTHENTICATED: { status: 401, retriable: false }, // no bearer token, or one that is malformed, forged or expired
  FORBIDDEN: { status: 403, retriable: false }, // a valid token whose role or subject does not cover the resource
  NOT_FOUND: { status: 404, retriable: false },
  CONFLICT: { status: 409, retriable: false }, // the value already exists (a unique key)
  TRANSITION_REFUSED: { status: 409, retriable: false },
  PAYLOAD_TOO_LARGE: { status: 413, retriable: false }, // the body is over its route's limit
  UNSUPPORTED_MEDIA_TYPE: { status: 415, retriable: false }, // a body that is not JSON where JSON is expected
  ORDER_LIMIT: { status: 422, retriable: false }, // a valid order beyond a business limit (total, distance)
  POSITION_REJECTED: { status: 422, retriable: false }, // well-formed positions the clock or accuracy rules refuse
  NO_DRIVER_AVAILABLE: { status: 409, retriable: true },
  UPSTREAM_UNAVAILABLE: { status: 503, retriable: true },
  TOO_MANY_STREAMS: { status: 503, retriable: true }, // this API process holds its most live streams (Retry-After)
  // What the live socket server (api/modules/tracking/live-socket.ts) answers before any route runs; Bun.serve
  // answers these itself on the API's port.
  MALFORMED_REQUEST: { status: 400, retriable: false }, // not a plain HTTP/1.1 request head
  METHOD_NOT_ALLOWED: { status: 405, retriable: false },
  REQUEST_TIMEOUT: { status: 408, retriable: true }, // the request head did not arrive in time
  HEADERS_TOO_LARGE: { status: 431, retriable: false },
  HTTP_VERSION_NOT_SUPPORTED: { status: 505, retriable: false },
  INTERNAL: { status: 500, retriable: true },
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AppError";
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retriable = ERROR_CODES[code].retriable;
  }

  toJSON() {
    return { error: { code: this.code, message: this.message } };
  }
}

/** A process that refused its configuration exits with this code (sysexits.h EX_CONFIG): restarting cannot help. */
export const EXIT_CONFIG = 78;

/** The exit code for a process ending on `error`: EXIT_CONFIG for a configuration it refused, 1 otherwise. */
export function exitCodeFor(error: unknown): number {
  return error instanceof AppError && error.code === "CONFIG_INVALID" ? EXIT_CONFIG : 1;
}
