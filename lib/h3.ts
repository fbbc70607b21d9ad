/** H3 cells as PostgreSQL bigints: h3-js speaks hex strings; an H3 index always fits in a signed 64-bit integer. */
import { gridDisk, latLngToCell } from "h3-js";

export function cellOf(lat: number, lon: number, resolution: number): bigint {
  return BigInt(`0x${latLngToCell(lat, lon, resolution)}`);
}

export function cellToHex(cell: bigint): string {
  return cell.toString(16);
}

/** Every cell within k rings of the cell (the cell itself included). */
export function cellsAround(cell: bigint, k: number): bigint[] {
  return gridDisk(cellToHex(cell), k).map((hex) => BigInt(`0x${hex}`));
}
