/**
 * One error shape for every answer: `{"error": {"code", "message"}}` with the codes of lib/errors.ts. PostgreSQL
 * refusals arrive as SQLSTATEs of class T1 (see db/migrations/0003_state_machines.sql) and become HTTP answers here,
 * so services just let them through.
 */
import { Elysia, ValidationError } from "elysia";
import { sqlState } from "../lib/db.ts";
import { AppError } from "../lib/errors.ts";

const SQLSTATE_CODES = {
  T1001: "TRANSITION_REFUSED",
  T1002: "TRANSITION_REFUSED",
  T1404: "NOT_FOUND",
  T1409: "NO_DRIVER_AVAILABLE",
  T1422: "VALIDATION",
  "22P02": "VALIDATION", // invalid text representation, e.g. a malformed uuid that slipped past the schema
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

export const errorHandler = new Elysia({ name: "error-handler" }).onError({ as: "global" }, ({ code, error, set }) => {
  // AppError first: its codes (NOT_FOUND, VALIDATION) are also names Elysia gives its own errors.
  const appError = error instanceof AppError ? error : (fromElysia(code, error) ?? toAppError(error));
  if (appError.code === "INTERNAL") console.error("[api] internal error:", appError.cause ?? appError);
  else if (appError.status >= 500) console.error(`[api] ${appError.code}: ${describeCause(appError)}`);
  set.status = appError.status;
  set.headers["content-type"] = "application/json";
  return appError.toJSON();
});
