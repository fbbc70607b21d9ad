/**
 * Fills the database with a plausible city: drivers (each with a driver_state row), restaurants clustered around
 * hotspots, customers spread over the land, and optionally orders waiting to be confirmed. Rows go in with COPY in
 * one transaction, so a failed run leaves the previous data untouched.
 *
 *   bun run generate -- --drivers 100000 --restaurants 2000 --customers 50000 --orders 20000 [--truncate|--upsert]
 *                       [--online] [--seed 42] [--city nyc] [--export drivers.json] [--export-only]
 */
import { writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { config } from "../lib/config.ts";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { cellOf } from "../lib/h3.ts";
import { cityByName, homePoint, pointNear, randomPoint, type City, type LatLon } from "../lib/cities.ts";
import { orderItems, personName, restaurantName } from "../lib/names.ts";
import { createRng, type Rng } from "../lib/random.ts";

export interface GenerateOptions {
  drivers: number;
  restaurants: number;
  customers: number;
  orders: number;
  /** truncate: start from empty tables; upsert: keep what is there and add (rows whose id exists are kept). */
  mode: "truncate" | "upsert";
  seed: number;
  city: City | string;
  /** Drivers start `available` at a position instead of `offline` without one. */
  online: boolean;
  /** Write the driver list for simulators here after loading. */
  exportFile?: string;
  h3Resolution?: number;
  /** Draw a progress bar on stderr; defaults to whether stderr is a terminal. */
  progress?: boolean;
}

export interface TableLoad {
  table: string;
  rows: number;
  seconds: number;
}

export interface GenerateSummary {
  seed: number;
  tables: TableLoad[];
  /** Wall time of everything, including emptying the tables, the commit and the ANALYZE. */
  seconds: number;
  /** The parts of `seconds` that are no table's COPY. */
  overhead: { truncate: number; commit: number; analyze: number };
  exported?: number;
}

/** A driver as simulators load it. `lat`/`lon` are its current position, or its home point when it has none. */
export interface ExportedDriver {
  id: string;
  name: string;
  lat: number;
  lon: number;
}

interface Place extends LatLon {
  id: string;
}
interface NamedPlace extends Place {
  name: string;
}

const TRUNCATED = ["drivers", "driver_state", "customers", "restaurants", "orders", "state_history", "position_trail"];
const VEHICLES = ["scooter", "scooter", "scooter", "bicycle", "bicycle", "car"] as const;
// Rows per COPY write: big enough that stream overhead vanishes, small enough for a smooth progress bar.
const ROWS_PER_CHUNK = 2_000;

/** ~0.1 m: stored values print short, and the H3 cell is computed from exactly what is stored. */
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;
const rounded = (p: LatLon): LatLon => ({ lat: round6(p.lat), lon: round6(p.lon) });
const ewkt = (p: LatLon) => `SRID=4326;POINT(${p.lon} ${p.lat})`;

/** COPY text format: backslash, tab and line breaks inside a value must be escaped. */
function tsv(value: string): string {
  return /[\\\t\n\r]/.test(value)
    ? value.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r")
    : value;
}

function distanceSq(a: LatLon, b: LatLon): number {
  const dLon = (a.lon - b.lon) * Math.cos((a.lat * Math.PI) / 180);
  return (a.lat - b.lat) ** 2 + dLon ** 2;
}

function* chunks<T>(items: Iterable<T>, toLine: (item: T) => string, onRows: (n: number) => void) {
  let lines: string[] = [];
  for (const item of items) {
    lines.push(toLine(item));
    if (lines.length === ROWS_PER_CHUNK) {
      yield `${lines.join("\n")}\n`;
      onRows(lines.length);
      lines = [];
    }
  }
  if (lines.length > 0) {
    yield `${lines.join("\n")}\n`;
    onRows(lines.length);
  }
}

function* times<T>(n: number, make: () => T): Generator<T> {
  for (let i = 0; i < n; i++) yield make();
}

/**
 * COPYs rows into a table. In upsert mode they go through a temporary copy of the table and only rows whose key is
 * new are inserted (COPY itself cannot skip conflicts). Returns the rows that landed in the table.
 */
async function copyInto(
  tx: Sql,
  table: string,
  columns: string[],
  lines: Iterable<string>,
  mode: GenerateOptions["mode"],
): Promise<number> {
  const cols = columns.join(", ");
  if (mode === "truncate") {
    const writable = await tx.unsafe(`copy ${table} (${cols}) from stdin`).writable();
    await pipeline(Readable.from(lines), writable);
    const [row] = await tx.unsafe<{ n: bigint }[]>(`select count(*) as n from ${table}`);
    return Number(row?.n ?? 0);
  }
  const scratch = `generate_${table}`;
  await tx.unsafe(`create temp table ${scratch} (like ${table} including defaults) on commit drop`);
  const writable = await tx.unsafe(`copy ${scratch} (${cols}) from stdin`).writable();
  await pipeline(Readable.from(lines), writable);
  const inserted = await tx.unsafe(`insert into ${table} (${cols}) select ${cols} from ${scratch} on conflict do nothing`);
  return inserted.count;
}

/** Existing rows to draw orders from when this run generates none of that kind. */
async function loadPlaces(tx: Sql, table: "customers" | "restaurants"): Promise<NamedPlace[]> {
  const rows = await tx.unsafe<NamedPlace[]>(
    `select id, name, st_y(location::geometry) as lat, st_x(location::geometry) as lon from ${table} order by id`,
  );
  return rows.map((r) => ({ id: r.id, name: r.name, lat: r.lat, lon: r.lon }));
}

function createBar(total: number, enabled: boolean) {
  if (!enabled || total === 0) return undefined;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: "{table} [{bar}] {percentage}% | {value}/{total} rows | {rate} rows/s",
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { table: "".padEnd(12), rate: 0 });
  return bar;
}

/** Draws the drivers of a seed: the same seed gives the same ids and names. */
function drawDrivers(seed: number, count: number) {
  const rng = createRng(seed, "drivers");
  return [...times(count, () => ({ id: rng.uuid(), name: personName(rng), vehicle: rng.pick(VEHICLES) }))];
}

function drawRestaurants(seed: number, count: number, city: City): NamedPlace[] {
  const rng = createRng(seed, "restaurants");
  return [...times(count, () => {
    const id = rng.uuid();
    // Most restaurants sit in a few dense neighbourhoods; the rest are anywhere.
    const hotspot = rng.next() < 0.8 ? rng.pick(city.hotspots) : undefined;
    const p = hotspot ? pointNear(city, rng, hotspot, hotspot.sigmaM) : randomPoint(city, rng);
    return { id, ...rounded(p), name: restaurantName(rng) };
  })];
}

function drawCustomers(seed: number, count: number, city: City): NamedPlace[] {
  const rng = createRng(seed, "customers");
  return [...times(count, () => ({ id: rng.uuid(), ...rounded(randomPoint(city, rng)), name: personName(rng) }))];
}

type Load = <T>(table: string, columns: string[], items: Iterable<T>, toLine: (item: T) => string) => Promise<void>;

/** COPYs one table after another inside the transaction, timing each and advancing the progress bar. */
function createLoader(tx: Sql, mode: GenerateOptions["mode"], bar: cliProgress.SingleBar | undefined, tables: TableLoad[]): Load {
  let done = 0;
  return async (table, columns, items, toLine) => {
    const t0 = performance.now();
    let copied = 0;
    const onRows = (n: number) => {
      done += n;
      copied += n;
      const rate = Math.round(copied / Math.max((performance.now() - t0) / 1000, 1e-3));
      bar?.update(done, { table: table.padEnd(12), rate });
    };
    const landed = await copyInto(tx, table, columns, chunks(items, toLine, onRows), mode);
    tables.push({ table, rows: copied === 0 ? 0 : landed, seconds: (performance.now() - t0) / 1000 });
  };
}

export async function generateData(sql: Sql, options: GenerateOptions): Promise<GenerateSummary> {
  const city = typeof options.city === "string" ? cityByName(options.city) : options.city;
  const resolution = options.h3Resolution ?? config().h3Resolution;
  const { mode, seed } = options;
  const started = performance.now();
  const now = new Date().toISOString();
  const tables: TableLoad[] = [];
  const overhead = { truncate: 0, commit: 0, analyze: 0 };
  let commitStarted = 0;
  const total = 2 * options.drivers + options.restaurants + options.customers + options.orders;
  const bar = createBar(total, options.progress ?? Boolean(process.stderr.isTTY));

  try {
    await sql.begin(async (transaction) => {
      const tx = transaction as unknown as Sql;
      const load = createLoader(tx, mode, bar, tables);
      const t0 = performance.now();
      if (mode === "truncate") await tx.unsafe(`truncate ${TRUNCATED.join(", ")} restart identity cascade`);
      overhead.truncate = (performance.now() - t0) / 1000;

      const drivers = drawDrivers(seed, options.drivers);
      await load("drivers", ["id", "name", "vehicle"], drivers, (d) => `${d.id}\t${tsv(d.name)}\t${d.vehicle}`);
      if (options.online) {
        await load("driver_state",
          ["driver_id", "status", "status_since", "position", "lat", "lon", "h3", "position_at", "updated_at"],
          drivers, (d) => {
            const p = rounded(homePoint(city, d.id));
            const h3 = cellOf(p.lat, p.lon, resolution);
            return `${d.id}\tavailable\t${now}\t${ewkt(p)}\t${p.lat}\t${p.lon}\t${h3}\t${now}\t${now}`;
          });
      } else {
        await load("driver_state", ["driver_id", "status", "status_since", "updated_at"], drivers,
          (d) => `${d.id}\toffline\t${now}\t${now}`);
      }

      let restaurants = drawRestaurants(seed, options.restaurants, city);
      await load("restaurants", ["id", "name", "location", "h3"], restaurants,
        (r) => `${r.id}\t${tsv(r.name)}\t${ewkt(r)}\t${cellOf(r.lat, r.lon, resolution)}`);

      let customers = drawCustomers(seed, options.customers, city);
      await load("customers", ["id", "name", "location"], customers, (c) => `${c.id}\t${tsv(c.name)}\t${ewkt(c)}`);

      if (options.orders > 0) {
        if (restaurants.length === 0) restaurants = await loadPlaces(tx, "restaurants");
        if (customers.length === 0) customers = await loadPlaces(tx, "customers");
        if (restaurants.length === 0 || customers.length === 0) {
          throw new Error("orders need customers and restaurants: generate some or load them first");
        }
        const rng = createRng(seed, "orders");
        await load("orders", ["id", "customer_id", "restaurant_id", "delivery_location", "items"],
          times(options.orders, () => makeOrder(rng, city, customers, restaurants)),
          (o) => `${o.id}\t${o.customerId}\t${o.restaurantId}\t${ewkt(o.delivery)}\t${tsv(JSON.stringify(o.items))}`);
      }
      commitStarted = performance.now();
    });
    overhead.commit = (performance.now() - commitStarted) / 1000;
  } finally {
    bar?.stop();
  }
  // Fresh statistics, so the first queries after a big load do not plan against empty tables.
  const analyzeStarted = performance.now();
  await sql`analyze drivers, driver_state, restaurants, customers, orders`;
  overhead.analyze = (performance.now() - analyzeStarted) / 1000;

  const summary: GenerateSummary = { seed, tables, seconds: (performance.now() - started) / 1000, overhead };
  if (options.exportFile) summary.exported = await exportDrivers(sql, options.exportFile, city);
  return summary;
}

/** A customer orders from the nearest of a few random restaurants, to a door a few metres from their own point. */
function makeOrder(rng: Rng, city: City, customers: readonly Place[], restaurants: readonly Place[]) {
  const id = rng.uuid();
  const customer = rng.pick(customers);
  let restaurant = rng.pick(restaurants);
  for (let i = 0; i < 3; i++) {
    const other = rng.pick(restaurants);
    if (distanceSq(other, customer) < distanceSq(restaurant, customer)) restaurant = other;
  }
  return {
    id,
    customerId: customer.id,
    restaurantId: restaurant.id,
    delivery: rounded(pointNear(city, rng, customer, 20)),
    items: orderItems(rng),
  };
}

/** Reads every driver with its position (its home point when it has none). */
export async function readDrivers(sql: Sql, city: City | string): Promise<ExportedDriver[]> {
  const c = typeof city === "string" ? cityByName(city) : city;
  const rows = await sql<{ id: string; name: string; lat: number | null; lon: number | null }[]>`
    select d.id, d.name, s.lat, s.lon from drivers d left join driver_state s on s.driver_id = d.id order by d.id`;
  return rows.map((r) => {
    const p = r.lat !== null && r.lon !== null ? { lat: r.lat, lon: r.lon } : rounded(homePoint(c, r.id));
    return { id: r.id, name: r.name, lat: p.lat, lon: p.lon };
  });
}

/** The driver list simulators load (`--drivers-file`): a JSON array, one driver per line. */
export async function exportDrivers(sql: Sql, file: string, city: City | string): Promise<number> {
  const drivers = await readDrivers(sql, city);
  await writeFile(file, `[\n${drivers.map((d) => JSON.stringify(d)).join(",\n")}\n]\n`);
  return drivers.length;
}

export function formatSummary(summary: GenerateSummary): string {
  const rows = summary.tables.map((t) => [t.table, String(t.rows), t.seconds.toFixed(2), rate(t.rows, t.seconds)]);
  const totalRows = summary.tables.reduce((n, t) => n + t.rows, 0);
  rows.push(["total", String(totalRows), summary.seconds.toFixed(2), rate(totalRows, summary.seconds)]);
  const header = ["table", "rows", "seconds", "rows/s"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const o = summary.overhead;
  const notes = `seed ${summary.seed}; total includes truncate ${o.truncate.toFixed(2)} s, commit ${o.commit.toFixed(2)} s, analyze ${o.analyze.toFixed(2)} s`;
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line), notes].join("\n");
}

function rate(rows: number, seconds: number): string {
  return seconds > 0 ? String(Math.round(rows / seconds)) : "-";
}

function count(values: Record<string, unknown>, name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== "string" || !/^\d+$/.test(raw)) throw new Error(`--${name}: "${String(raw)}" is not a whole number`);
  return Number(raw);
}

export function parseGenerateArgs(argv: string[]) {
  const { values } = parseArgs({
    // `bun run generate -- …` may hand the separator through.
    args: argv[0] === "--" ? argv.slice(1) : argv,
    options: {
      drivers: { type: "string" },
      restaurants: { type: "string" },
      customers: { type: "string" },
      orders: { type: "string" },
      truncate: { type: "boolean" },
      upsert: { type: "boolean" },
      online: { type: "boolean" },
      seed: { type: "string" },
      city: { type: "string" },
      export: { type: "string" },
      "export-only": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.truncate && values.upsert) throw new Error("--truncate and --upsert exclude each other");
  if (values["export-only"] && !values.export) throw new Error("--export-only needs --export FILE");
  return {
    help: values.help ?? false,
    exportOnly: values["export-only"] ?? false,
    options: {
      drivers: count(values, "drivers", 2_000),
      restaurants: count(values, "restaurants", 300),
      customers: count(values, "customers", 5_000),
      orders: count(values, "orders", 0),
      mode: values.upsert ? "upsert" : "truncate",
      // Without --seed every run differs (so repeated --upsert runs add new rows); the summary prints the seed used.
      seed: count(values, "seed", Math.floor(Math.random() * 2 ** 31)),
      city: cityByName(values.city ?? "nyc"),
      online: values.online ?? false,
      exportFile: values.export,
    } satisfies GenerateOptions,
  };
}

const USAGE = `usage: bun run generate -- [--drivers N] [--restaurants N] [--customers N] [--orders N]
                          [--truncate | --upsert] [--online] [--seed N] [--city nyc|sf]
                          [--export FILE] [--export-only]`;

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseGenerateArgs>;
  try {
    parsed = parseGenerateArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (parsed.help) {
    console.log(USAGE);
    return;
  }
  const sql = connectDatabase(config().databaseUrl, { max: 2, application: "generate" });
  try {
    const { options } = parsed;
    if (parsed.exportOnly && options.exportFile) {
      const n = await exportDrivers(sql, options.exportFile, options.city);
      console.log(`exported ${n} drivers to ${options.exportFile}`);
      return;
    }
    const summary = await generateData(sql, options);
    console.log(formatSummary(summary));
    if (summary.exported !== undefined) console.log(`exported ${summary.exported} drivers to ${options.exportFile}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(`generate failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
