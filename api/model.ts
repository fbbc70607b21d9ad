/** Models shared by every module: the error answer, ids in paths, points. */
import { t } from "elysia";

export const ErrorModel = t.Object(
  { error: t.Object({ code: t.String(), message: t.String() }) },
  { description: "Every error: a code from a closed list and a human message" },
);

/**
 * A pattern, not `format: "uuid"`: @elysiajs/openapi re-registers TypeBox's uuid format with a checker that builds
 * a validation schema on every call, which cost a quarter of the API's CPU under load.
 */
export const Uuid = t.String({
  pattern: "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
  description: "UUID",
});
/** Elysia's t.Integer also accepts numeric strings; a JSON body's integers are numbers. */
export const Int = (options: { minimum?: number; maximum?: number; description?: string } = {}) =>
  t.Number({ multipleOf: 1, ...options });
export const Timestamp = t.String({ format: "date-time" });

export const LatLon = t.Object({
  lat: t.Number({ minimum: -90, maximum: 90 }),
  lon: t.Number({ minimum: -180, maximum: 180 }),
});

export const errorResponses = { 400: ErrorModel, 404: ErrorModel, 503: ErrorModel } as const;
/**
 * What a route with a body can answer besides: over its size (413, api/body-limits.ts), not JSON (415), valid but
 * beyond a business rule (422: ORDER_LIMIT, POSITION_REJECTED).
 */
export const bodyErrorResponses = { 413: ErrorModel, 415: ErrorModel, 422: ErrorModel } as const;

/** ISO time or null: postgres.js gives Date objects, the JSON contract gives strings. */
export const isoOrNull = (value: Date | null): string | null => (value === null ? null : value.toISOString());
