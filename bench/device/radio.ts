/**
 * The LTE radio model bench:device applies to a phone's packet times (route time, seconds). From Huang et al., "A
 * Close Examination of Performance and Power Characteristics of 4G LTE Networks", MobiSys 2012 (Tables 3 and 4):
 * an idle radio is promoted to RRC_CONNECTED in ~260 ms at ~1.21 W; after the last packet it stays connected for the
 * ~11.6 s tail (DRX) at ~1.06 W before it drops back to idle; while transferring it draws P = alpha_u * up + alpha_d *
 * down + beta (Mbps), at the median throughputs the paper measured (6 Mbps up, 13 Mbps down). Idle power is the
 * phone's baseline and not counted. A packet more than the tail after the previous one is a new wake-up.
 */
export const LTE = Object.freeze({
  promotionS: 0.2601,
  promotionW: 1.2107,
  tailS: 11.576,
  tailW: 1.06,
  betaW: 1.28804,
  alphaUpWPerMbps: 0.43839,
  alphaDownWPerMbps: 0.05197,
  upMbps: 6,
  downMbps: 13,
});

export interface TimedPacket {
  /** Route time, seconds. */
  t: number;
  bytes: number;
  up: boolean;
}

export interface RadioCost {
  wakeUps: number;
  /** Promotion + transfer + connected (tail) time, seconds. */
  radioOnS: number;
  energyJ: number;
}

export function radioCost(packets: readonly TimedPacket[], model = LTE): RadioCost {
  const sorted = [...packets].sort((a, b) => a.t - b.t);
  let wakeUps = 0;
  let radioOnS = 0;
  let energyJ = 0;
  let lastT = -Infinity;
  for (const p of sorted) {
    const gap = p.t - lastT;
    if (gap > model.tailS) {
      // Idle: promote, and the previous burst (if any) paid its full tail.
      wakeUps++;
      radioOnS += model.promotionS;
      energyJ += model.promotionS * model.promotionW;
      if (Number.isFinite(lastT)) {
        radioOnS += model.tailS;
        energyJ += model.tailS * model.tailW;
      }
    } else {
      // Still connected: the time since the previous packet is connected time.
      radioOnS += gap;
      energyJ += gap * model.tailW;
    }
    const rate = p.up ? model.upMbps : model.downMbps;
    const seconds = (p.bytes * 8) / (rate * 1e6);
    const watts = (p.up ? model.alphaUpWPerMbps : model.alphaDownWPerMbps) * rate + model.betaW;
    radioOnS += seconds;
    energyJ += seconds * watts;
    lastT = p.t;
  }
  if (Number.isFinite(lastT)) {
    radioOnS += model.tailS;
    energyJ += model.tailS * model.tailW;
  }
  return { wakeUps, radioOnS, energyJ };
}
