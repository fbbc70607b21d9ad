/**
 * The binary position form, topic `drivers/{id}/b` (docs/phone.md, "Encoding", has the measurements that chose it):
 * integer micro-degrees and milliseconds, each fix after the first as a difference from the one before, all as
 * LEB128 varints (signed ones zigzag-encoded). A 4 s fix of a moving phone costs ~10 bytes instead of ~80 in JSON.
 *
 *   byte 0        0xB1 (form and version)
 *   varint        n, the number of fixes (1..MAX_POSITIONS_PER_MESSAGE)
 *   per fix:
 *     byte        flags: bit 0 acc, bit 1 vel, bit 2 cog, bit 3 batt present (other bits 0)
 *     varint      first fix: epoch milliseconds; later fixes: zigzag(ms - previous ms)
 *     varint      zigzag(micro-degrees of latitude), later fixes as a difference from the previous fix
 *     varint      zigzag(micro-degrees of longitude), likewise
 *     varint      acc, whole metres            (if flagged)
 *     varint      vel, whole km/h              (if flagged)
 *     varint      zigzag(cog), whole degrees   (if flagged)
 *     varint      batt, whole percent          (if flagged)
 *
 * Precision: 1e-6 degree (11 cm), 1 ms, whole units for the optional fields: below what a phone's GPS resolves.
 * Plain numbers, no BigInt and no Node/Bun API: it runs on a phone (phone/encoding.ts) and in the bridge alike.
 */
import type { DevicePosition } from "./position.ts";

export const BINARY_FORM_MARKER = 0xb1;

/** A phone's fix (lib/position.ts DevicePosition); `tst` keeps its milliseconds through this form. */
export type BinaryFix = DevicePosition;

const FLAG_ACC = 1;
const FLAG_VEL = 2;
const FLAG_COG = 4;
const FLAG_BATT = 8;

/** Zigzag over plain numbers (exact up to 2^52): 0, -1, 1, -2 … → 0, 1, 2, 3 … */
const zigzag = (n: number) => (n >= 0 ? n * 2 : -n * 2 - 1);
const unzigzag = (n: number) => (n % 2 === 0 ? n / 2 : -(n + 1) / 2);

function pushVarint(out: number[], value: number) {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`varint out of range: ${value}`);
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

// "+ 0": no negative zero (the decoder never produces one).
const micro = (degrees: number) => Math.round(degrees * 1e6) + 0;
const whole = (value: number) => Math.round(value) + 0;

/** The fix as the decoder will return it: what the form keeps of `fix`. */
export function quantiseFix(fix: BinaryFix): BinaryFix {
  const out: BinaryFix = { lat: micro(fix.lat) / 1e6, lon: micro(fix.lon) / 1e6, tst: Math.round(fix.tst * 1000) / 1000 };
  if (fix.acc !== undefined) out.acc = whole(fix.acc);
  if (fix.vel !== undefined) out.vel = whole(fix.vel);
  if (fix.cog !== undefined) out.cog = whole(fix.cog);
  if (fix.batt !== undefined) out.batt = whole(fix.batt);
  return out;
}

export function encodeBinaryPositions(fixes: readonly BinaryFix[]): Uint8Array {
  if (fixes.length === 0) throw new RangeError("no fixes to encode");
  const out: number[] = [BINARY_FORM_MARKER];
  pushVarint(out, fixes.length);
  let prev = { ms: 0, lat: 0, lon: 0 };
  fixes.forEach((fix, i) => {
    const ms = Math.round(fix.tst * 1000);
    const lat = micro(fix.lat);
    const lon = micro(fix.lon);
    const flags =
      (fix.acc !== undefined ? FLAG_ACC : 0) |
      (fix.vel !== undefined ? FLAG_VEL : 0) |
      (fix.cog !== undefined ? FLAG_COG : 0) |
      (fix.batt !== undefined ? FLAG_BATT : 0);
    out.push(flags);
    pushVarint(out, i === 0 ? ms : zigzag(ms - prev.ms));
    pushVarint(out, zigzag(i === 0 ? lat : lat - prev.lat));
    pushVarint(out, zigzag(i === 0 ? lon : lon - prev.lon));
    if (fix.acc !== undefined) pushVarint(out, whole(fix.acc));
    if (fix.vel !== undefined) pushVarint(out, whole(fix.vel));
    if (fix.cog !== undefined) pushVarint(out, zigzag(whole(fix.cog)));
    if (fix.batt !== undefined) pushVarint(out, whole(fix.batt));
    prev = { ms, lat, lon };
  });
  return Uint8Array.from(out);
}

export type BinaryDecoded = { ok: true; fixes: BinaryFix[] } | { ok: false; detail: string };

/** Decodes a `drivers/{id}/b` payload; never throws. Range checks are the caller's (lib/position.ts). */
export function decodeBinaryPositions(bytes: Uint8Array, maxFixes: number): BinaryDecoded {
  let at = 0;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (at >= bytes.length) throw new RangeError("truncated");
      const byte = bytes[at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 49) throw new RangeError("varint too long");
    }
    return value;
  };
  try {
    if (bytes[at++] !== BINARY_FORM_MARKER) return { ok: false, detail: "not a binary v1 position message" };
    const n = varint();
    if (n < 1 || n > maxFixes) return { ok: false, detail: `${n} fixes (1..${maxFixes} allowed)` };
    const fixes: BinaryFix[] = [];
    let prev = { ms: 0, lat: 0, lon: 0 };
    for (let i = 0; i < n; i++) {
      if (at >= bytes.length) throw new RangeError("truncated");
      const flags = bytes[at++]!;
      if (flags > 15) return { ok: false, detail: `unknown flags ${flags} in fix ${i}` };
      const ms = i === 0 ? varint() : prev.ms + unzigzag(varint());
      const lat = (i === 0 ? 0 : prev.lat) + unzigzag(varint());
      const lon = (i === 0 ? 0 : prev.lon) + unzigzag(varint());
      const fix: BinaryFix = { lat: lat / 1e6, lon: lon / 1e6, tst: ms / 1000 };
      if (flags & FLAG_ACC) fix.acc = varint();
      if (flags & FLAG_VEL) fix.vel = varint();
      if (flags & FLAG_COG) fix.cog = unzigzag(varint());
      if (flags & FLAG_BATT) fix.batt = varint();
      fixes.push(fix);
      prev = { ms, lat, lon };
    }
    if (at !== bytes.length) return { ok: false, detail: `${bytes.length - at} bytes after the last fix` };
    return { ok: true, fixes };
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : String(error) };
  }
}
