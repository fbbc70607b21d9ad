/**
 * The reporting-mode command a phone reads, retained, on its own command topic `drivers/{id}/cmd` (contract shared
 * with phone/): `{"v":1,"mode":"live"|"idle"|"off","state":"<driver state>","at":"<ISO time of the state change>"}`.
 * Built from the database's `driver_mode` notices (migration 0013) or from a reconciliation page; both carry the same
 * four fields.
 */

export const REPORTING_MODES = ["live", "idle", "off"] as const;
export type ReportingMode = (typeof REPORTING_MODES)[number];

export interface ModeChange {
  driverId: string;
  mode: ReportingMode;
  state: string;
  /** When the driver entered `state` (ISO 8601, UTC). */
  at: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const STATE = /^[a-z_]{1,32}$/;

const isMode = (value: unknown): value is ReportingMode => (REPORTING_MODES as readonly unknown[]).includes(value);

/** A change from the database's row, or undefined if it is not one (a foreign notice on the channel, a marker). */
export function toModeChange(row: { driver_id?: unknown; mode?: unknown; state?: unknown; at?: unknown }): ModeChange | undefined {
  const { driver_id: driverId, mode, state } = row;
  if (typeof driverId !== "string" || !UUID.test(driverId) || !isMode(mode)) return undefined;
  if (typeof state !== "string" || !STATE.test(state)) return undefined;
  const at = row.at instanceof Date ? row.at : typeof row.at === "string" ? new Date(row.at) : undefined;
  if (!at || Number.isNaN(at.getTime())) return undefined;
  return { driverId: driverId.toLowerCase(), mode, state, at: at.toISOString() };
}

/** A `driver_mode` notice's payload, parsed; undefined for anything else on the channel. */
export function parseModeNotice(payload: string): ModeChange | undefined {
  try {
    const value: unknown = JSON.parse(payload);
    return typeof value === "object" && value !== null ? toModeChange(value) : undefined;
  } catch {
    return undefined;
  }
}

/** The driver's command topic (prefix: MQTT_TOPIC_PREFIX, "" in production). */
export const commandTopic = (driverId: string, prefix = "") => `${prefix}drivers/${driverId}/cmd`;

/** The retained message's payload. */
export const modeCommand = (change: ModeChange): string =>
  JSON.stringify({ v: 1, mode: change.mode, state: change.state, at: change.at });
