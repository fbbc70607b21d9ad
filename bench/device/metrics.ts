/**
 * What one mode's run cost and delivered, in route time: bytes (both ways, IP packets), wake-ups, radio-on time and
 * energy (bench/device/radio.ts), the freshness a watching customer sees (fix time → server receipt, for fixes taken
 * while watched) and the age of the newest position dispatch could see while the driver was available.
 */
import type { Packet } from "./capture.ts";
import { routeTime, type ModeTrace } from "./modes.ts";
import { radioCost } from "./radio.ts";
import { isWatched, ROUTE_SECONDS, type RouteFix } from "./route.ts";

export interface ModeMetrics {
  bytesPerHour: number;
  bytesUpPerHour: number;
  bytesDownPerHour: number;
  packetsPerHour: number;
  messagesPerHour: number;
  /** The part of bytesPerHour and messagesPerHour sent while the driver was watched (20 of the 60 minutes). */
  bytesWhileWatched: number;
  messagesWhileWatched: number;
  wakeUpsPerHour: number;
  radioOnSecondsPerHour: number;
  energyJPerHour: number;
  fixesSent: number;
  fixesReceived: number;
  watchedFreshnessP50S: number;
  watchedFreshnessP99S: number;
  watchedFreshnessMaxS: number;
  dispatchAgeP99S: number;
  dispatchAgeMaxS: number;
  errors: string[];
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function modeMetrics(trace: ModeTrace, packets: readonly Packet[], route: readonly RouteFix[]): ModeMetrics {
  const timed = packets.map((p) => ({ t: routeTime(trace.anchors, p.atMs), bytes: p.bytes, up: p.up }));
  const hours = ROUTE_SECONDS / 3600;
  const radio = radioCost(timed);
  const watchedFixes = route.filter((f) => isWatched(f.state));
  const watchedFrom = watchedFixes[0]?.t ?? 0;
  const watchedUntil = (watchedFixes.at(-1)?.t ?? -4) + 4;
  const sum = (xs: readonly { bytes: number }[]) => xs.reduce((n, x) => n + x.bytes, 0);
  const freshness = route
    .filter((f) => isWatched(f.state) && trace.receipts.has(f.t))
    .map((f) => trace.receipts.get(f.t)! - f.t);
  // Dispatch's view while available: each route second, how old is the newest fix the server has?
  const arrivals = [...trace.receipts.entries()].map(([fixT, at]) => ({ fixT, at })).sort((a, b) => a.at - b.at);
  const ages: number[] = [];
  let next = 0;
  let newest = Number.NEGATIVE_INFINITY;
  const stateAt = (t: number) => route[Math.min(route.length - 1, Math.floor(t / 4))]!.state;
  for (let t = 0; t < ROUTE_SECONDS; t++) {
    while (next < arrivals.length && arrivals[next]!.at <= t) newest = Math.max(newest, arrivals[next++]!.fixT);
    // From the first arrival on (before it the server knows nothing of this phone).
    if (Number.isFinite(newest) && !isWatched(stateAt(t))) ages.push(t - newest);
  }
  return {
    bytesPerHour: sum(timed) / hours,
    bytesUpPerHour: sum(timed.filter((p) => p.up)) / hours,
    bytesDownPerHour: sum(timed.filter((p) => !p.up)) / hours,
    packetsPerHour: timed.length / hours,
    messagesPerHour: trace.sends.length / hours,
    bytesWhileWatched: sum(timed.filter((p) => p.t >= watchedFrom && p.t < watchedUntil)),
    messagesWhileWatched: trace.sends.filter((m) => m.t >= watchedFrom && m.t < watchedUntil).length,
    wakeUpsPerHour: radio.wakeUps / hours,
    radioOnSecondsPerHour: radio.radioOnS / hours,
    energyJPerHour: radio.energyJ / hours,
    fixesSent: trace.sends.reduce((n, s) => n + s.fixes, 0),
    fixesReceived: trace.receipts.size,
    watchedFreshnessP50S: percentile(freshness, 50),
    watchedFreshnessP99S: percentile(freshness, 99),
    watchedFreshnessMaxS: percentile(freshness, 100),
    dispatchAgeP99S: percentile(ages, 99),
    dispatchAgeMaxS: percentile(ages, 100),
    errors: trace.errors,
  };
}
