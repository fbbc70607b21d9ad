/**
 * The Kafka record on `driver-pos`, binary form (v2): what the bridge and the HTTP API write and the worker reads.
 * The same content as the JSON v1 record (lib/position.ts PositionRecord), written as fixed-width numbers so neither
 * side pays for JSON: profiled at 25,000 positions/s, JSON encoding was 18% of the bridge's busy time and JSON decoding
 * 21% of the worker's (docs/steady-state.md). Lossless: every number is the float64 the producer held, so a record
 * decodes to exactly the positions that were encoded, and the JSON v1 form can be rebuilt for a dead letter.
 *
 *   byte 0        0xB2 (form and version; a JSON record starts with "{")
 *   bytes 1-16    driver id, the UUID's 16 bytes
 *   float64       received_ms
 *   uint16        n, the number of positions (1..65,535)
 *   per position:
 *     uint8       flags: bit 0 acc, bit 1 vel, bit 2 cog, bit 3 batt present (other bits 0)
 *     float64 ×3  tst (epoch seconds), lat, lon
 *     float64     acc, vel, cog, batt: each only if flagged, in that order
 *
 * All numbers big-endian. Decoding never throws; range checks stay with the worker (lib/position.ts). Node's (and
 * Bun's) Buffer: this runs in the bridge, the worker and the tests, never on a phone.
 */
import type { DevicePosition, PositionRecord } from "./position.ts";

export const RECORD_V2_MARKER = 0xb2;

const HEADER_BYTES = 1 + 16 + 8 + 2;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A hex digit's value from its char code, -1 for anything else. */
const HEX_VALUE = Array.from({ length: 128 }, (_, c) => {
  const ch = String.fromCharCode(c);
  return /[0-9a-fA-F]/.test(ch) ? parseInt(ch, 16) : -1;
});
/** Where the 32 hex digits of `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` are. */
const UUID_DIGITS = [...Array(36).keys()].filter((i) => i !== 8 && i !== 13 && i !== 18 && i !== 23);

function writeUuid(bytes: Uint8Array, at: number, uuid: string) {
  const bad = () => new RangeError(`driver id is not a UUID: ${uuid}`);
  if (uuid.length !== 36 || uuid[8] !== "-" || uuid[13] !== "-" || uuid[18] !== "-" || uuid[23] !== "-") throw bad();
  for (let i = 0; i < 16; i++) {
    const hi = HEX_VALUE[uuid.charCodeAt(UUID_DIGITS[2 * i]!)] ?? -1;
    const lo = HEX_VALUE[uuid.charCodeAt(UUID_DIGITS[2 * i + 1]!)] ?? -1;
    if (hi < 0 || lo < 0) throw bad();
    bytes[at + i] = hi * 16 + lo;
  }
}

function readUuid(bytes: Uint8Array, at: number): string {
  let s = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += HEX[bytes[at + i]!];
  }
  return s;
}

const flagsOf = (p: DevicePosition) =>
  (p.acc !== undefined ? 1 : 0) | (p.vel !== undefined ? 2 : 0) | (p.cog !== undefined ? 4 : 0) | (p.batt !== undefined ? 8 : 0);

const popcount4 = (flags: number) => (flags & 1) + ((flags >> 1) & 1) + ((flags >> 2) & 1) + ((flags >> 3) & 1);

/** One record's bytes. Throws RangeError on a driver id that is not a UUID or on 0 or more than 65,535 positions. */
export function encodeRecord(driverId: string, receivedMs: number, positions: readonly DevicePosition[]): Buffer {
  const n = positions.length;
  if (n === 0 || n > 0xffff) throw new RangeError(`${n} positions (1..65535)`);
  let size = HEADER_BYTES;
  for (let i = 0; i < n; i++) size += 25 + 8 * popcount4(flagsOf(positions[i]!));
  // From Node's (and Bun's) buffer pool: every byte is written below.
  const bytes = Buffer.allocUnsafe(size);
  bytes[0] = RECORD_V2_MARKER;
  writeUuid(bytes, 1, driverId);
  bytes.writeDoubleBE(receivedMs, 17);
  bytes.writeUInt16BE(n, 25);
  let at = HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    const p = positions[i]!;
    const flags = flagsOf(p);
    bytes[at] = flags;
    bytes.writeDoubleBE(p.tst, at + 1);
    bytes.writeDoubleBE(p.lat, at + 9);
    bytes.writeDoubleBE(p.lon, at + 17);
    at += 25;
    if (flags & 1) at = bytes.writeDoubleBE(p.acc!, at);
    if (flags & 2) at = bytes.writeDoubleBE(p.vel!, at);
    if (flags & 4) at = bytes.writeDoubleBE(p.cog!, at);
    if (flags & 8) at = bytes.writeDoubleBE(p.batt!, at);
  }
  return bytes;
}

export type RecordDecoded = { ok: true; record: PositionRecord } | { ok: false; detail: string };

/** A v2 record's content, as the JSON v1 record would hold it. */
export function decodeRecord(bytes: Uint8Array): RecordDecoded {
  if (bytes.length < HEADER_BYTES || bytes[0] !== RECORD_V2_MARKER) return { ok: false, detail: "not a v2 position record" };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint16(25);
  if (n === 0) return { ok: false, detail: "no positions" };
  const positions: DevicePosition[] = new Array(n);
  let at = HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    if (at + 25 > bytes.length) return { ok: false, detail: `truncated in position ${i}` };
    const flags = view.getUint8(at);
    if (flags > 15) return { ok: false, detail: `unknown flags ${flags} in position ${i}` };
    const p: DevicePosition = { lat: view.getFloat64(at + 9), lon: view.getFloat64(at + 17), tst: view.getFloat64(at + 1) };
    at += 25;
    if (at + 8 * popcount4(flags) > bytes.length) return { ok: false, detail: `truncated in position ${i}` };
    if (flags & 1) { p.acc = view.getFloat64(at); at += 8; }
    if (flags & 2) { p.vel = view.getFloat64(at); at += 8; }
    if (flags & 4) { p.cog = view.getFloat64(at); at += 8; }
    if (flags & 8) { p.batt = view.getFloat64(at); at += 8; }
    positions[i] = p;
  }
  if (at !== bytes.length) return { ok: false, detail: `${bytes.length - at} bytes after the last position` };
  return { ok: true, record: { v: 1, driver_id: readUuid(bytes, 1), received_ms: view.getFloat64(17), positions } };
}
