/**
 * One error shape for every answer: `{"error": {"code", "message"}}` with the codes of lib/errors.ts. PostgreSQL
 * refusals arrive as SQLSTATEs of class T1 (see db/migrations/0003_state_machines.sql) and become HTTP answers here,
 * so services just let them through.
 */
import { Elysia, ValidationError } from "elysia";
import { sqlState } from "../lib/db.ts";
import { AppError } from "../lib/errors.ts";
import { bodyLimits } from "./body-limits.ts";

const SQLSTATE_CODES = {
  T1001: "TRANSITION_REFUSED",
  T1002: "TRANSITION_REFUSED",
  T1404: "NOT_FOUND",
  T1409: "NO_DRIVER_AVAILABLE",
  T1422: "VALIDATION",
  // Class 22 (data exception) and 23 (integrity) are what input can provoke: the caller's to fix, never a 500.
  "22P02": "VALIDATION", // invalid text representation, e.g. a malformed uuid that slipped past the schema
  "22P05": "VALIDATION", // untranslatable character: \u0000 in text or jsonb
  "22021": "VALIDATION", // character not in repertoire (bytes that are not UTF-8)
  "22001": "VALIDATION", // string too long for its column
  "22003": "VALIDATION", // numeric value out of range
  "22007": "VALIDATION", // invalid datetime format
  "22008": "VALIDATION", // datetime field overflow
  "22023": "VALIDATION", // invalid parameter value (e.g. a PostGIS coordinate)
  "22026": "VALIDATION", // string data length mismatch
  "2201E": "VALIDATION", // invalid argument for a logarithm (ST_ functions given degenerate input)
  "23502": "VALIDATION", // not null: a required value missing
  "23514": "VALIDATION", // check constraint
  "23505": "CONFLICT", // unique: it exists already
  "23503": "NOT_FOUND", // foreign key: something the input refers to does not exist
} as const;

// postgres.js and socket errors when the database is unreachable: retrying later can help, the input was fine.
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "57P01", // admin shutdown
  "57P03", // cannot connect now (starting up)
]);

function isSqlStateCode(state: string): state is keyof typeof SQLSTATE_CODES {
  return state in SQLSTATE_CODES;
}

/** The AppError an unknown thrown value stands for. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const state = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  if (state !== undefined && isSqlStateCode(state)) {
    return new AppError(SQLSTATE_CODES[state], message, { cause: error });
  }
  if (state !== undefined && UNREACHABLE.has(state)) {
    return new AppError("UPSTREAM_UNAVAILABLE", "the database is unavailable", { cause: error });
  }
  return new AppError("INTERNAL", "internal error", { cause: error });
}

function describeValidation(error: ValidationError): string {
  const first = error.valueError;
  if (!first) return `invalid ${error.type}`;
  const where = first.path ? `${error.type}${first.path.replaceAll("/", ".")}` : error.type;
  return `${where}: ${first.message}`;
}

const describeCause = (error: AppError) =>
  error.cause instanceof Error ? `${error.message} (${error.cause.message})` : error.message;

/** Elysia's own errors (routing, parsing, schemas) in the same shape. */
function fromElysia(code: string | number, error: unknown): AppError | undefined {
  switch (code) {
    case "NOT_FOUND":
      return new AppError("NOT_FOUND", "no such route");
    case "PARSE":
      // A refusal of api/body-limits.ts (413, 415, depth), wrapped by Elysia on its way out of the parse hook.
      if (error instanceof Error && error.cause instanceof AppError) return error.cause;
      return new AppError("VALIDATION", "the body is not valid for its content type (malformed JSON?)");
    case "VALIDATION": {
      const v = error as ValidationError;
      // A response that fails its own schema is our bug, not the caller's.
      if (v.type === "response") return new AppError("INTERNAL", "internal error", { cause: error });
      return new AppError(v.type === "params" ? "INVALID_ID" : "VALIDATION", describeValidation(v));
    }
    case "INVALID_COOKIE_SIGNATURE":
    case "INVALID_FILE_TYPE":
      return new AppError("VALIDATION", error instanceof Error ? error.message : String(code));
  }
  return undefined;
}

/** Logs what is the server's fault (5xx); the caller's mistakes are answered, not logged. */
export function logServerError(appError: AppError): void {
  if (appError.code === "INTERNAL") console.error("[api] internal error:", appError.cause ?? appError);
  // Refusals at the live-stream ceiling come by the thousand and are counted on /metrics: a log line each would cost
  // more than the refusal.
  else if (appError.status >= 500 && appError.code !== "TOO_MANY_STREAMS") {
    console.error(`[api] ${appError.code}: ${describeCause(appError)}`);
  }
}

/**
 * The error boundary of the app: one error shape for everything, and the body limits, which are part of never
 * answering bad input with a 500 or a stall (they refuse before parsing, their refusals come out through here).
 */
export const errorHandler = new Elysia({ name: "error-handler" }).use(bodyLimits).onError({ as: "global" }, ({ code, error, set }) => {
  // AppError first: its codes (NOT_FOUND, VALIDATION) are also names Elysia gives its own errors.
  const appError = error instanceof AppError ? error : (fromElysia(code, error) ?? toAppError(error));
  logServerError(appError);
  set.status = appError.status;
  set.headers["content-type"] = "application/json";
  return appError.toJSON();
});
