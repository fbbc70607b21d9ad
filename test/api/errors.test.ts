import { describe, expect, test } from "bun:test";
import { toAppError } from "../../api/errors.ts";
import { AppError } from "../../lib/errors.ts";

const pgError = (code: string, message = `boom ${code}`) => Object.assign(new Error(message), { code });

describe("toAppError", () => {
  const table: [string, string, number][] = [
    ["T1001", "TRANSITION_REFUSED", 409],
    ["T1002", "TRANSITION_REFUSED", 409],
    ["T1404", "NOT_FOUND", 404],
    ["T1409", "NO_DRIVER_AVAILABLE", 409],
    ["T1422", "VALIDATION", 400],
    ["22P02", "VALIDATION", 400],
    // Class 22/23: reachable from input, so the caller's to fix (400/404/409), never a 500.
    ["22P05", "VALIDATION", 400],
    ["22021", "VALIDATION", 400],
    ["22001", "VALIDATION", 400],
    ["22003", "VALIDATION", 400],
    ["22007", "VALIDATION", 400],
    ["22008", "VALIDATION", 400],
    ["22023", "VALIDATION", 400],
    ["22026", "VALIDATION", 400],
    ["2201E", "VALIDATION", 400],
    ["23502", "VALIDATION", 400],
    ["23514", "VALIDATION", 400],
    ["23505", "CONFLICT", 409],
    ["23503", "NOT_FOUND", 404],
  ];
  for (const [state, code, status] of table) {
    test(`SQLSTATE ${state} → ${status} ${code}, keeping the database's message`, () => {
      const cause = pgError(state);
      const error = toAppError(cause);
      expect([error.code, error.status, error.message]).toEqual([code, status, `boom ${state}`]);
      expect(error.cause).toBe(cause);
    });
  }

  test("an unreachable database is 503, retriable", () => {
    for (const code of ["ECONNREFUSED", "CONNECTION_CLOSED", "CONNECT_TIMEOUT", "57P01"]) {
      const error = toAppError(pgError(code));
      expect([error.code, error.status, error.retriable]).toEqual(["UPSTREAM_UNAVAILABLE", 503, true]);
    }
  });

  test("anything else is a 500 that does not leak its message", () => {
    const error = toAppError(pgError("42P01", 'relation "secret_table" does not exist'));
    expect([error.code, error.status, error.message]).toEqual(["INTERNAL", 500, "internal error"]);
    expect(toAppError("a string").code).toBe("INTERNAL");
  });

  test("an AppError stays itself", () => {
    const error = new AppError("NOT_FOUND", "x");
    expect(toAppError(error)).toBe(error);
  });
});
