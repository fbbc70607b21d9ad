/**
 * What a simulated phone puts on the wire (DESIGN.md, MQTT): JSON v1 on `drivers/{id}/location` — one object, or an
 * array for a batch — or the compact text form on `drivers/{id}/l` (lib/position.ts parseCompact), one line each.
 * Built by hand rather than JSON.stringify: this runs tens of thousands of times a second.
 */
import type { DevicePosition } from "../lib/position.ts";

export function positionTopic(driverId: string, compact: boolean, prefix = ""): string {
  return compact ? `${prefix}drivers/${driverId}/l` : `${prefix}drivers/${driverId}/location`;
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
export function encodePositions(positions: readonly DevicePosition[], compact: boolean): string {
  if (compact) return positions.map(compactPosition).join("\n");
  if (positions.length === 1) return jsonPosition(positions[0]!);
  return `[${positions.map(jsonPosition).join(",")}]`;
}
