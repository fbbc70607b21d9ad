/**
 * What a simulated phone puts on the wire (DESIGN.md, MQTT): JSON v1 on `drivers/{id}/location` — one object, or an
 * array for a batch —, the compact text form on `drivers/{id}/l` (lib/position.ts parseCompact), one line each, or
 * the binary form the project's phone client sends on `drivers/{id}/b` (lib/position-binary.ts).
 * JSON is built by hand rather than with JSON.stringify: this runs tens of thousands of times a second.
 */
import { encodeBinaryPositions } from "../lib/position-binary.ts";
import type { DevicePosition } from "../lib/position.ts";

export const PAYLOAD_FORMS = ["json", "compact", "binary"] as const;
export type PayloadForm = (typeof PAYLOAD_FORMS)[number];

/** A command line's --form value, checked; absent is "json". */
export function parsePayloadForm(value: string | undefined): PayloadForm {
  const form = (value ?? "json") as PayloadForm;
  if (!PAYLOAD_FORMS.includes(form)) throw new Error(`--form: "${value}" is not one of ${PAYLOAD_FORMS.join(", ")}`);
  return form;
}

const TOPIC_SUFFIX: Record<PayloadForm, string> = { json: "location", compact: "l", binary: "b" };

export function positionTopic(driverId: string, form: PayloadForm, prefix = ""): string {
  return `${prefix}drivers/${driverId}/${TOPIC_SUFFIX[form]}`;
}

const optional = (name: string, value: number | undefined) => (value === undefined ? "" : `,"${name}":${value}`);

function jsonPosition(p: DevicePosition): string {
  return `{"lat":${p.lat},"lon":${p.lon},"tst":${p.tst}${optional("acc", p.acc)}${optional("vel", p.vel)}${optional("cog", p.cog)}${optional("batt", p.batt)}}`;
}

const field = (value: number | undefined) => (value === undefined ? "" : String(value));

function compactPosition(p: DevicePosition): string {
  return `${p.tst},${p.lat},${p.lon},${field(p.acc)},${field(p.vel)},${field(p.cog)},${field(p.batt)}`;
}

/** One message's payload. A single JSON position is sent as an object (the common v1 form), several as an array. */
export function encodePositions(positions: readonly DevicePosition[], form: "binary"): Uint8Array;
export function encodePositions(positions: readonly DevicePosition[], form: "json" | "compact"): string;
export function encodePositions(positions: readonly DevicePosition[], form: PayloadForm): string | Uint8Array;
export function encodePositions(positions: readonly DevicePosition[], form: PayloadForm): string | Uint8Array {
  if (form === "binary") return encodeBinaryPositions(positions);
  if (form === "compact") return positions.map(compactPosition).join("\n");
  if (positions.length === 1) return jsonPosition(positions[0]!);
  return `[${positions.map(jsonPosition).join(",")}]`;
}
