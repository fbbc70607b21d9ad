/**
 * When a phone sends its fixes: the reporting mode the server chose (a retained message on `drivers/{id}/cmd`) and
 * the fixes not yet sent decide it. Pure: no clock, no timer, no I/O; evaluated each time the phone takes a fix and
 * when the mode changes (docs/phone.md, "Modes").
 *
 *   live  every fix as soon as it is taken (a customer is watching: assigned, at_restaurant, delivering, arriving)
 *   idle  batched (available): sent once the newest fix is >= 100 m from the last SENT fix, or when waiting for the
 *         next fix would leave the server's newest position older than 30 s (minus a slack for the trip), which
 *         also bounds the oldest unsent fix's wait to under 30 s
 *   off   the server has the driver offline: nothing is sent while the app takes no fixes (the driver went off duty).
 *         A phone that still takes fixes is on duty and the server's view is stale (the sweep takes a silent driver
 *         offline after OFFLINE_AFTER, e.g. while it had no network): it sends its fixes on the idle deadline only
 *         (no movement rule), and the first of them brings the driver back online, after which the server says idle
 */
import { haversineM, type DevicePosition } from "../lib/position.ts";

export const REPORTING_MODES = ["live", "idle", "off"] as const;
export type ReportingMode = (typeof REPORTING_MODES)[number];

/** Before the server said anything (no retained command yet). */
export const DEFAULT_MODE: ReportingMode = "idle";

export type Fix = DevicePosition;

export interface PolicySettings {
  /** idle: send once the newest fix is this far from the last sent one. */
  idleMoveM: number;
  /** idle: the server's newest position must never be older than this. */
  idleMaxAgeMs: number;
  /** How often the phone takes a fix (the next evaluation comes this much later). */
  fixIntervalMs: number;
  /** Kept for the trip to the server (network, broker, bridge). */
  slackMs: number;
}

export const DEFAULT_POLICY: Readonly<PolicySettings> = Object.freeze({
  idleMoveM: 100,
  idleMaxAgeMs: 30_000,
  fixIntervalMs: 4_000,
  slackMs: 2_000,
});

export interface PolicyState {
  /** Fixes taken and not yet handed to the transport, oldest first. */
  pending: readonly Fix[];
  /** The newest fix handed to the transport, if any. */
  lastSent?: Fix;
}

/** Why a message went: the policy's reasons, or "app" when the app flushed (PhoneClient.flush). */
export type SendReason = "live" | "first" | "moved" | "age" | "resume" | "app";
export type Decision = { send: true; reason: SendReason } | { send: false };

const ms = (fix: Fix) => fix.tst * 1000;

/** Whether the pending fixes go now (all of them, as one message). */
export function decide(mode: ReportingMode, state: PolicyState, settings: PolicySettings = DEFAULT_POLICY): Decision {
  const newest = state.pending.at(-1);
  if (newest === undefined) return { send: false };
  if (mode === "live") return { send: true, reason: "live" };
  const last = state.lastSent;
  if (last === undefined) return { send: true, reason: mode === "off" ? "resume" : "first" };
  if (mode === "idle" && haversineM(last.lat, last.lon, newest.lat, newest.lon) >= settings.idleMoveM) {
    return { send: true, reason: "moved" };
  }
  const deadline = Math.min(ms(last), ms(state.pending[0]!)) + settings.idleMaxAgeMs - settings.slackMs;
  if (ms(newest) + settings.fixIntervalMs > deadline) return { send: true, reason: mode === "off" ? "resume" : "age" };
  return { send: false };
}

/** The mode in a command message (`{"v":1,"mode":…}`); undefined for anything else, which the phone ignores. */
export function parseModeCommand(payload: Uint8Array | string): ReportingMode | undefined {
  try {
    const text = typeof payload === "string" ? payload : new TextDecoder().decode(payload);
    const body = JSON.parse(text) as { v?: unknown; mode?: unknown };
    if (body?.v !== 1) return undefined;
    return (REPORTING_MODES as readonly unknown[]).includes(body.mode) ? (body.mode as ReportingMode) : undefined;
  } catch {
    return undefined;
  }
}
