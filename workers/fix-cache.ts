/**
 * The last accepted fix per driver, for the decoder's impossible-jump check; bounded, the least recently updated
 * drivers forgotten first.
 *
 * Columnar: a Map from driver id to a slot, and the fixes in typed arrays indexed by slot. As one small object per
 * driver, 100,000 drivers held 30 MB of the worker's heap (each object with its own hidden class, property array and
 * three boxed numbers); as columns they hold 2.4 MB besides the ids.
 */
import type { LastFix } from "../lib/position.ts";
import type { FixMemory } from "./decode-batch.ts";

const MAX_STRIKES = 255;

export interface FixCache extends FixMemory {
  /** Keeps `fix` as the driver's last one, unless an equal or newer fix is already kept. */
  remember(driverId: string, fix: LastFix): void;
  size(): number;
}

export function createFixCache(maxDrivers: number): FixCache {
  if (!Number.isInteger(maxDrivers) || maxDrivers < 1) throw new RangeError(`maxDrivers must be ≥ 1, got ${maxDrivers}`);
  // Map order is the order drivers were last updated in: the first key is the one to forget.
  const slots = new Map<string, number>();
  const lat = new Float64Array(maxDrivers);
  const lon = new Float64Array(maxDrivers);
  const tMs = new Float64Array(maxDrivers);
  const strikes = new Uint8Array(maxDrivers);

  const claimSlot = (): number => {
    if (slots.size < maxDrivers) return slots.size;
    const [oldest, slot] = slots.entries().next().value!;
    slots.delete(oldest);
    return slot;
  };

  return {
    get(driverId) {
      const slot = slots.get(driverId);
      return slot === undefined ? undefined : { lat: lat[slot]!, lon: lon[slot]!, tMs: tMs[slot]! };
    },
    strike(driverId) {
      const slot = slots.get(driverId);
      if (slot === undefined) return 0;
      if (strikes[slot]! < MAX_STRIKES) strikes[slot]! += 1;
      return strikes[slot]!;
    },
    remember(driverId, fix) {
      let slot = slots.get(driverId);
      if (slot !== undefined) {
        if (tMs[slot]! >= fix.tMs) return;
        slots.delete(driverId); // moved to the end: most recently updated
      } else {
        slot = claimSlot();
      }
      slots.set(driverId, slot);
      lat[slot] = fix.lat;
      lon[slot] = fix.lon;
      tMs[slot] = fix.tMs;
      strikes[slot] = 0;
    },
    size: () => slots.size,
  };
}
