/**
 * Staging rows → PostgreSQL's binary COPY format, for `COPY position_staging (…) FROM STDIN WITH (FORMAT binary)`.
 *
 * Binary, because text cost the batch twice: formatting two ISO times and six numbers per row here, then parsing
 * them again in the server (timestamptz parsing especially). For 50,000 rows: text 70 ms to build + 135 ms to COPY.
 * Layout (PostgreSQL docs, "COPY … Binary Format"): a signature and two int32s, then per row an int16 field count
 * and per field an int32 byte length (-1 for NULL) and the value in network byte order; an int16 -1 ends the data.
 */
import type { StagedPosition } from "./decode-batch.ts";

/** The columns, in the order each row is written. */
export const COPY_COLUMNS =
  "seq, driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, battery_pct, received_at";
const FIELDS = 11;
const SIGNATURE = [0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00]; // "PGCOPY\n\377\r\n\0"
const HEADER_BYTES = SIGNATURE.length + 4 + 4;
// int16 count + 11 int32 lengths + int4 + uuid + 2 × timestamptz + 2 × float8 + int8 + 3 × float4 + int2.
const MAX_ROW_BYTES = 2 + FIELDS * 4 + 4 + 16 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 2 + 8;
/** PostgreSQL's timestamps count microseconds from 2000-01-01 UTC. */
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
const TWO_TO_32 = 2 ** 32;

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX["0123456789abcdef".charCodeAt(i)] = i;
  HEX["0123456789ABCDEF".charCodeAt(i)] = i;
}

export class CopyEncodingError extends Error {
  readonly code = "COPY_ENCODING";
}

/** Writes the 16 bytes of a canonical UUID string (8-4-4-4-12 hex digits); refuses anything else. */
function writeUuid(view: DataView, at: number, uuid: string): void {
  if (uuid.length !== 36) throw new CopyEncodingError(`"${uuid}" is not a UUID`);
  let byte = 0;
  for (let i = 0; i < 36; i++) {
    const c = uuid.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) throw new CopyEncodingError(`"${uuid}" is not a UUID`);
      continue;
    }
    const high = c < 128 ? HEX[c]! : -1;
    const d = uuid.charCodeAt(++i);
    const low = d < 128 ? HEX[d]! : -1;
    if (high < 0 || low < 0) throw new CopyEncodingError(`"${uuid}" is not a UUID`);
    view.setUint8(at + byte++, (high << 4) | low);
  }
}

export function toCopyBinary(rows: readonly StagedPosition[]): Uint8Array {
  const buffer = new ArrayBuffer(HEADER_BYTES + rows.length * MAX_ROW_BYTES + 2);
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  bytes.set(SIGNATURE, 0);
  let at = HEADER_BYTES; // flags and header extension length: both 0, as allocated

  const int4 = (value: number) => {
    view.setInt32(at, 4);
    view.setInt32(at + 4, value);
    at += 8;
  };
  const float8 = (value: number) => {
    view.setInt32(at, 8);
    view.setFloat64(at + 4, value);
    at += 12;
  };
  const float4 = (value: number | undefined) => {
    if (value === undefined) return void (view.setInt32(at, -1), (at += 4));
    view.setInt32(at, 4);
    view.setFloat32(at + 4, value);
    at += 8;
  };
  const timestamptz = (ms: number) => {
    if (!Number.isFinite(ms)) throw new CopyEncodingError(`${ms} is not a time`);
    const micros = Math.round((ms - PG_EPOCH_MS) * 1000);
    const high = Math.floor(micros / TWO_TO_32);
    view.setInt32(at, 8);
    view.setInt32(at + 4, high);
    view.setUint32(at + 8, micros - high * TWO_TO_32);
    at += 12;
  };

  for (const r of rows) {
    view.setInt16(at, FIELDS);
    at += 2;
    int4(r.seq);
    view.setInt32(at, 16);
    writeUuid(view, at + 4, r.driverId);
    at += 20;
    timestamptz(r.recordedMs);
    float8(r.lat);
    float8(r.lon);
    view.setInt32(at, 8);
    view.setBigInt64(at + 4, r.h3);
    at += 12;
    float4(r.speedKmh);
    float4(r.headingDeg);
    float4(r.accuracyM);
    if (r.batteryPct === undefined) {
      view.setInt32(at, -1);
      at += 4;
    } else {
      view.setInt32(at, 2);
      view.setInt16(at + 4, r.batteryPct);
      at += 6;
    }
    timestamptz(r.receivedMs);
  }
  view.setInt16(at, -1);
  return bytes.subarray(0, at + 2);
}
