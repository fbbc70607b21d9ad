/**
 * The three payload forms a phone can publish, each on its own topic (lib/position.ts decodes all three):
 *   json    `drivers/{id}/location`  JSON v1: one object, or an array for a batch
 *   line    `drivers/{id}/l`         one `tst,lat,lon,acc,vel,cog,batt` line per fix
 *   binary  `drivers/{id}/b`         lib/position-binary.ts: micro-degrees, ms deltas, varints
 * docs/phone.md ("Encoding") measures them; the client publishes `binary`.
 */
import { encodeBinaryPositions } from "../lib/position-binary.ts";
import type { Fix } from "./reporting-policy.ts";

export const PAYLOAD_FORMS = ["json", "line", "binary"] as const;
export type PayloadForm = (typeof PAYLOAD_FORMS)[number];

const SUFFIX: Record<PayloadForm, string> = { json: "location", line: "l", binary: "b" };

export function positionTopicFor(driverId: string, form: PayloadForm, prefix = ""): string {
  return `${prefix}drivers/${driverId}/${SUFFIX[form]}`;
}

const optional = (name: string, value: number | undefined) => (value === undefined ? "" : `,"${name}":${value}`);
const jsonFix = (p: Fix) =>
  `{"lat":${p.lat},"lon":${p.lon},"tst":${p.tst}${optional("acc", p.acc)}${optional("vel", p.vel)}${optional("cog", p.cog)}${optional("batt", p.batt)}}`;
const field = (value: number | undefined) => (value === undefined ? "" : String(value));
const lineFix = (p: Fix) => `${p.tst},${p.lat},${p.lon},${field(p.acc)},${field(p.vel)},${field(p.cog)},${field(p.batt)}`;

/** One message's payload carrying `fixes` (oldest first). */
export function encodeFixes(fixes: readonly Fix[], form: PayloadForm): Uint8Array | string {
  if (fixes.length === 0) throw new RangeError("no fixes to encode");
  switch (form) {
    case "binary":
      return encodeBinaryPositions(fixes);
    case "line":
      return fixes.map(lineFix).join("\n");
    case "json":
      return fixes.length === 1 ? jsonFix(fixes[0]!) : `[${fixes.map(jsonFix).join(",")}]`;
  }
}

export const payloadBytes = (payload: Uint8Array | string) =>
  typeof payload === "string" ? new TextEncoder().encode(payload).length : payload.length;
