/**
 * The available drivers in memory, for dispatch (issue 16): a packed static R-tree (flatbush) rebuilt from
 * `available_drivers()` (migration 0017) every DISPATCH_INDEX_REFRESH_MS. It only proposes:
 * the nearest few it knows, which PostgreSQL ranks by their current rows and claims one of (assign_batch). Nothing on
 * the ingest path feeds it; its cost is one read of the available drivers per refresh.
 *
 * What it trades (docs/dispatch.md): its snapshot is up to a refresh old, so a driver who became available, or came
 * nearer than the proposed ones, since then is not proposed. Why flatbush: at 100,000 drivers under Bun it builds in
 * ~20 ms and answers in tens of µs, where kdbush + geokdbush took 40–130 ms and ~100 µs. The tree holds plain
 * degrees (x = longitude, y = latitude); `nearestOnSphere` turns that into the nearest by great-circle distance.
 * When the snapshot is older than `maxAgeMs` (the database unreachable) it proposes nothing and the caller uses the
 * exact search over H3 cells (0011).
 */
import Flatbush from "flatbush";
import type { Sql } from "../../../lib/db.ts";
import { haversineM } from "../../../lib/position.ts";

export interface DriverIndexOptions {
  /** The pause between one read's end and the next read, at least. */
  refreshMs: number;
  /**
   * The share of wall time the index may spend reading, at most (0 < share ≤ 1; default 1, no bound): the pause
   * after a read of r ms is at least r × (1/share − 1). A read of all 100,000 drivers takes ~200 ms and ~230 ms of CPU
   * (database and API together), and slows as the box gets busier, so the bound stretches the pause when reads are
   * dear and backs off under load (docs/dispatch.md).
   */
  readShare?: number;
  /** How many drivers a proposal names. */
  candidates: number;
  /** Nobody farther than this is proposed. */
  maxDistanceKm: number;
  /** A snapshot older than this proposes nothing; default three refreshes. */
  maxAgeMs?: number;
  onError?: (error: unknown) => void;
}

interface Snapshot {
  /** Driver i's uuid, 16 bytes at i * 16 (formatted only for the drivers proposed). */
  ids: Uint8Array;
  lats: Float64Array;
  lons: Float64Array;
  count: number;
  tree: Flatbush;
  /** Date.now() when the read began: everything committed before it is in the snapshot. */
  readAt: number;
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

function uuidAt(ids: Uint8Array, i: number): string {
  let s = "";
  for (let b = 0; b < 16; b++) {
    if (b === 4 || b === 6 || b === 8 || b === 10) s += "-";
    s += HEX[ids[i * 16 + b]!];
  }
  return s;
}

/**
 * The first 4 of driver i's 16 bytes, as a number: enough to rule out almost every driver as "claimed" without
 * formatting its id (the proposal's filter runs for every driver of the box it reads).
 */
const keyAt = (ids: Uint8Array, i: number) =>
  ((ids[i * 16]! << 24) | (ids[i * 16 + 1]! << 16) | (ids[i * 16 + 2]! << 8) | ids[i * 16 + 3]!) >>> 0;
/** The same key from a uuid's text (its first 8 hex digits). */
const keyOf = (uuid: string) => Number.parseInt(uuid.slice(0, 8), 16);

const M_PER_DEGREE_LAT = 111_195;
const RAD = Math.PI / 180;

/**
 * The `k` nearest points to (lat, lon) by great-circle distance within `maxM`, nearest first, from a tree of plain
 * degrees. A degree of longitude is shorter than one of latitude, so the tree's own nearest are not the sphere's:
 * take its k nearest, let d be the farthest of them on the sphere, and read every point of the box that holds the
 * circle of radius d (a degree of longitude is at least cos(latitude) of a degree of latitude there); nobody outside
 * it can be nearer than those k.
 */
export function nearestOnSphere(
  s: Pick<Snapshot, "tree" | "lats" | "lons" | "count">,
  lat: number,
  lon: number,
  k: number,
  maxM: number,
  keep: (i: number) => boolean = () => true,
): number[] {
  const usable = (i: number) => i < s.count && keep(i);
  const first = s.tree.neighbors(lon, lat, k, maxM / M_PER_DEGREE_LAT / Math.max(Math.cos(lat * RAD), 1e-6), usable);
  if (first.length === 0) return [];
  const reach = first.length < k ? maxM : Math.min(maxM, Math.max(...first.map((i) => haversineM(lat, lon, s.lats[i]!, s.lons[i]!))));
  const edgeLat = Math.min(89.9, Math.abs(lat) + reach / M_PER_DEGREE_LAT);
  const r = reach / M_PER_DEGREE_LAT / Math.cos(edgeLat * RAD);
  return s.tree.search(lon - r, lat - r, lon + r, lat + r, usable)
    .map((i) => ({ i, m: haversineM(lat, lon, s.lats[i]!, s.lons[i]!) }))
    .filter((c) => c.m <= maxM)
    .sort((a, b) => a.m - b.m)
    .slice(0, k)
    .map((c) => c.i);
}

/** Bytes a driver takes in the packed read: its uuid (16), lat and lon (float8, big-endian, 8 each). */
const PACKED_DRIVER_BYTES = 32;

/**
 * The available drivers packed by PostgreSQL into one bytea (uuid_send || float8send || float8send each), parsed
 * with a DataView: no string or object per driver. Measured at 100,000 drivers: the text protocol cost the API
 * ~300 ms of CPU per read, a binary COPY ~270 ms (one stream chunk per row), this 15–55 ms.
 */
export function parsePackedDrivers(data: Uint8Array | null, readAt: number): Snapshot {
  const bytes = data ?? new Uint8Array(0);
  if (bytes.byteLength % PACKED_DRIVER_BYTES !== 0) throw new Error("available drivers: a truncated read");
  const count = bytes.byteLength / PACKED_DRIVER_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ids = new Uint8Array(count * 16);
  const lats = new Float64Array(count);
  const lons = new Float64Array(count);
  const tree = new Flatbush(Math.max(count, 1));
  for (let i = 0; i < count; i++) {
    const at = i * PACKED_DRIVER_BYTES;
    ids.set(bytes.subarray(at, at + 16), i * 16);
    lats[i] = view.getFloat64(at + 16);
    lons[i] = view.getFloat64(at + 24);
    tree.add(lons[i]!, lats[i]!);
  }
  if (count === 0) tree.add(0, 90); // flatbush needs its declared count: a point at the pole, never proposed
  tree.finish();
  return { ids, lats, lons, count, tree, readAt };
}

/** One read of the available drivers, parsed and indexed, on this thread. */
export async function readSnapshot(sql: Sql): Promise<Snapshot> {
  const readAt = Date.now();
  const [row] = await sql<{ packed: Uint8Array | null }[]>`
    select string_agg(uuid_send(driver_id) || float8send(lat) || float8send(lon), ''::bytea) as packed
    from available_drivers()`;
  return parsePackedDrivers(row?.packed ?? null, readAt);
}

/** A snapshot as it crosses threads: typed arrays and the tree's one ArrayBuffer, moved, not copied. */
export interface PortableSnapshot {
  ids: Uint8Array;
  lats: Float64Array;
  lons: Float64Array;
  count: number;
  tree: ArrayBuffer;
  readAt: number;
}

export const toPortable = (s: Snapshot): PortableSnapshot => ({ ...s, tree: s.tree.data as ArrayBuffer });
export const transferList = (p: PortableSnapshot): ArrayBuffer[] =>
  [p.ids.buffer as ArrayBuffer, p.lats.buffer as ArrayBuffer, p.lons.buffer as ArrayBuffer, p.tree];
const fromPortable = (p: PortableSnapshot): Snapshot => ({ ...p, tree: Flatbush.from(p.tree) });

/** Where snapshots come from. */
export interface SnapshotReader {
  read(): Promise<Snapshot>;
  close(): void;
}

/** Reads on this thread, through `sql` (tests; the caller owns the pool). */
export const readerOn = (sql: Sql): SnapshotReader => ({ read: () => readSnapshot(sql), close: () => {} });

/**
 * Reads on a worker thread with its own connection to `databaseUrl` (the API): decoding ~3 MB and building the tree
 * take ~80 ms of CPU at 100,000 drivers, which on the event loop delayed every request in that window.
 */
export function readerInWorker(databaseUrl: string): SnapshotReader {
  const worker = new Worker(new URL("./driver-index-worker.ts", import.meta.url).href);
  const pending = new Map<number, { resolve: (s: Snapshot) => void; reject: (e: Error) => void }>();
  let next = 0;
  worker.onmessage = (event: MessageEvent<{ id: number; snapshot?: PortableSnapshot; error?: string }>) => {
    const p = pending.get(event.data.id);
    pending.delete(event.data.id);
    if (!p) return;
    if (event.data.snapshot) p.resolve(fromPortable(event.data.snapshot));
    else p.reject(new Error(event.data.error ?? "the index reader gave no snapshot"));
  };
  worker.onerror = (event) => {
    for (const p of pending.values()) p.reject(new Error(`the index reader failed: ${event.message}`));
    pending.clear();
  };
  return {
    read: () =>
      new Promise<Snapshot>((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, databaseUrl });
      }),
    close: () => worker.terminate(),
  };
}

export interface DriverIndex {
  /** Reads the available drivers now (the first call waits for the first snapshot). */
  refresh(): Promise<void>;
  /** Starts refreshing every refreshMs; the first read is awaited by nobody. */
  start(): void;
  /** Stops refreshing (start() resumes). */
  stop(): void;
  /** Stops refreshing and releases the reader (its worker thread and connection). */
  close(): void;
  /**
   * The nearest drivers to a point, nearest first, none already claimed through this process since the snapshot;
   * undefined when there is no snapshot recent enough to trust.
   */
  propose(lat: number, lon: number): string[] | undefined;
  /** A driver this process just gave an order: not proposed again until a snapshot taken afterwards. */
  claimed(driverId: string): void;
  stats(): { drivers: number; ageMs: number | undefined; lastReadMs: number | undefined; nextDelayMs: number };
}

/** The pause before the next read, after one that took `lastReadMs`: refreshMs, stretched to keep reads to `readShare`. */
export function refreshDelayMs(refreshMs: number, lastReadMs: number | undefined, readShare = 1): number {
  if (!(readShare > 0 && readShare <= 1)) throw new RangeError(`readShare ${readShare} is not in (0, 1]`);
  return Math.max(refreshMs, Math.round((lastReadMs ?? 0) * (1 / readShare - 1)));
}

export function createDriverIndex(reader: SnapshotReader, options: DriverIndexOptions): DriverIndex {
  const delayMs = () => refreshDelayMs(options.refreshMs, lastReadMs, options.readShare);
  /** Three refreshes as they are now paced: a snapshot older than that was not followed by a successful read. */
  const maxAgeMs = () => options.maxAgeMs ?? 3 * (delayMs() + (lastReadMs ?? 0));
  let snapshot: Snapshot | undefined;
  let lastReadMs: number | undefined;
  /** Driver id → Date.now() when this process claimed it. */
  const taken = new Map<string, number>();
  /** keyOf of every id in `taken` (and perhaps of some no longer there, until the next read). */
  let takenKeys = new Set<number>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let reading: Promise<void> | undefined;

  async function read(): Promise<void> {
    const started = performance.now();
    const next = await reader.read();
    snapshot = next;
    for (const [id, at] of taken) if (at < next.readAt) taken.delete(id);
    takenKeys = new Set([...taken.keys()].map(keyOf));
    lastReadMs = performance.now() - started;
  }

  const refresh = () => (reading ??= read().finally(() => (reading = undefined)));

  function stop() {
    running = false;
    clearTimeout(timer);
  }

  function schedule() {
    if (!running) return;
    timer = setTimeout(async () => {
      try {
        await refresh();
      } catch (error) {
        options.onError?.(error);
      }
      schedule();
    }, delayMs());
  }

  return {
    refresh,
    start() {
      if (running) return;
      running = true;
      refresh().catch((error) => options.onError?.(error));
      schedule();
    },
    stop,
    close() {
      stop();
      reader.close();
    },
    propose(lat, lon) {
      const s = snapshot;
      if (!s || Date.now() - s.readAt > maxAgeMs()) return undefined;
      const found = nearestOnSphere(s, lat, lon, options.candidates, options.maxDistanceKm * 1000, (i) =>
        taken.size === 0 || !takenKeys.has(keyAt(s.ids, i)) || !taken.has(uuidAt(s.ids, i)));
      return found.map((i) => uuidAt(s.ids, i));
    },
    claimed(driverId) {
      taken.set(driverId, Date.now());
      takenKeys.add(keyOf(driverId));
    },
    stats: () => ({
      drivers: snapshot?.count ?? 0,
      ageMs: snapshot ? Date.now() - snapshot.readAt : undefined,
      lastReadMs,
      nextDelayMs: delayMs(),
    }),
  };
}
