/**
 * `bun run bench:dispatch-cost`: what the API's dispatch costs apart from ingest, on a quiet box. A scratch database
 * of 100,000 available drivers; bench/dispatch/beside-ingest.ts (the index's paced reads, and with --orders-per-s N
 * that many orders a second placed and assigned by the API's orders service) runs for --seconds per arm, the arms
 * (0 and 20 orders/s by default) alternating --rounds times. Reports the dispatch process's CPU and PostgreSQL's
 * (every postgres process of the box, background ones and those that exit during the arm included: run it with nothing
 * else on the stack), from /proc.
 * Then, per order placed and assigned one at a time on one connection, the wall time of each statement the service
 * sends (quiet box: the database's time, one round trip each). Prints a table, writes JSON under bench/results/.
 */
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { arrayLiteral } from "../../api/modules/orders/assignment.ts";
import { createDriverIndex, readerInWorker } from "../../api/modules/orders/driver-index.ts";
import { connectDatabase } from "../../lib/db.ts";
import { createScratchDatabase } from "../../tools/scratch-database.ts";
import { resultStem } from "../support/plot.ts";
import { CLK_TCK, procSample } from "../support/process-stats.ts";
import { availableFleet, resetOrders } from "./fleet.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "45" },
    rounds: { type: "string", default: "2" },
    rates: { type: "string", default: "0,20" },
    orders: { type: "string", default: "600" },
    /** assign_batch's plans: "generic" as migrated (0020), or "auto" as before 0020, for comparison. */
    plans: { type: "string", default: "generic" },
  },
});
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const RATES = args.rates!.split(",").map(Number);
if (args.plans !== "generic" && args.plans !== "auto") throw new Error(`--plans: generic or auto, not ${args.plans}`);
const ticksOf = (pid: number) => procSample(pid)?.cpuTicks ?? 0;

/** /proc/<pid>/stat of a postgres process: its parent, and CPU ticks of its own and of its exited children. */
function postgresStat(pid: number): { ppid: number; ticks: number; childTicks: number } | undefined {
  try {
    if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "postgres") return undefined;
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    return { ppid: f[1]!, ticks: f[11]! + f[12]!, childTicks: f[13]! + f[14]! };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** Every postgres process now: ticks by pid, and the postmaster's exited children's ticks. */
function postgresSample() {
  const byPid = new Map<number, { ppid: number; ticks: number; childTicks: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const s = postgresStat(Number(entry));
    if (s) byPid.set(Number(entry), s);
  }
  const postmaster = [...byPid].find(([, s]) => !byPid.has(s.ppid));
  return { byPid, exitedChildTicks: postmaster?.[1].childTicks ?? 0 };
}

/**
 * PostgreSQL's CPU ticks between two samples: each process's growth (from 0 if it started meanwhile), plus what the
 * postmaster's children that exited meanwhile used (autovacuum workers, backends), counted by the postmaster once
 * they were reaped. A child that exited had its ticks at `a` counted there already, so those are taken back.
 */
function postgresTicksBetween(a: ReturnType<typeof postgresSample>, b: ReturnType<typeof postgresSample>): number {
  let ticks = b.exitedChildTicks - a.exitedChildTicks;
  for (const [pid, s] of b.byPid) ticks += s.ticks - (a.byPid.get(pid)?.ticks ?? 0);
  for (const [pid, s] of a.byPid) if (!b.byPid.has(pid)) ticks -= s.ticks;
  return ticks;
}

const scratch = await createScratchDatabase(`bench_dispatch_cost_${Date.now()}`);
const sql = connectDatabase(scratch.url, { max: 1, application: "bench-dispatch-cost" });

async function arm(rate: number) {
  const proc = Bun.spawn(
    ["bun", "--preload", "./lib/stack-env.ts", "bench/dispatch/beside-ingest.ts", "--database-url", scratch.url, "--orders-per-s", String(rate)],
    { stdout: "pipe", stderr: "inherit" },
  );
  const lines = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`beside-ingest exited (${await proc.exited}) before its first read`);
    text += value;
  }
  const process0 = ticksOf(proc.pid);
  const postgres0 = postgresSample();
  const started = performance.now();
  await Bun.sleep(SECONDS * 1000);
  const wall = (performance.now() - started) / 1000;
  const processPct = ((ticksOf(proc.pid) - process0) / CLK_TCK / wall) * 100;
  const postgresPct = (postgresTicksBetween(postgres0, postgresSample()) / CLK_TCK / wall) * 100;
  proc.kill("SIGTERM");
  for (;;) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  if ((await proc.exited) !== 0) throw new Error("beside-ingest failed");
  const counts = JSON.parse(text.trim().split("\n").at(-1)!) as { orders: { placed: number; assigned: number; refused: number } };
  await resetOrders(sql);
  return { rate, wallS: +wall.toFixed(1), processCpuPct: +processPct.toFixed(1), postgresCpuPct: +postgresPct.toFixed(1), orders: counts.orders };
}

/** Per order, one at a time on one connection: the wall time of each statement the API's service sends. */
async function perStatement(n: number) {
  const reader = readerInWorker(scratch.url);
  const index = createDriverIndex({ read: () => reader.read(), close: reader.close }, { refreshMs: 60_000, candidates: 8, maxDistanceKm: 15 });
  await index.refresh();
  const restaurants = await sql<{ id: string; lat: number; lon: number }[]>`
    select id, st_y(location::geometry) as lat, st_x(location::geometry) as lon from restaurants order by id`;
  const [customer] = await sql<{ id: string }[]>`select id from customers order by id limit 1`;
  const ms = { insert: 0, restaurant: 0, assignBatch: 0, readBack: 0 };
  const time = async <T>(key: keyof typeof ms, run: () => Promise<T>) => {
    const started = performance.now();
    const out = await run();
    ms[key] += performance.now() - started;
    return out;
  };
  for (let i = 0; i < n; i++) {
    const r = restaurants[(i * 7) % restaurants.length]!;
    const [order] = await time("insert", () => sql<{ id: string }[]>`
      insert into orders (customer_id, restaurant_id, delivery_location, status, confirmed_at)
      values (${customer!.id}, ${r.id}, (select location from restaurants where id = ${r.id}), 'confirmed', now())
      returning id`);
    await time("restaurant", () => sql`
      select st_y(r.location::geometry) as lat, st_x(r.location::geometry) as lon
      from orders o join restaurants r on r.id = o.restaurant_id where o.id = ${order!.id}`);
    const proposed = index.propose(r.lat, r.lon) ?? [];
    const [row] = await time("assignBatch", () => sql<{ driver_id: string | null }[]>`
      select driver_id from assign_batch(${arrayLiteral([order!.id])}::uuid[], ${arrayLiteral(proposed)}::uuid[],
                                         ${arrayLiteral(proposed.map(() => 1))}::int[])`);
    if (!row?.driver_id) throw new Error(`order ${order!.id} was not assigned`);
    index.claimed(row.driver_id);
    await time("readBack", () => sql`select * from orders o left join drivers d on d.id = o.driver_id where o.id = ${order!.id}`);
  }
  index.close();
  await resetOrders(sql);
  return Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, +(v / n).toFixed(3)]));
}

try {
  console.error(`generating 100000 drivers in ${scratch.name}…`);
  await availableFleet(sql, 100_000);
  if (args.plans === "auto") await sql`alter function assign_batch(uuid[], uuid[], int[]) set plan_cache_mode = auto`;
  const arms = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const rate of RATES) {
      const a = await arm(rate);
      arms.push({ round, ...a });
      console.error(`round ${round}, ${rate} orders/s: dispatch process ${a.processCpuPct}%, PostgreSQL ${a.postgresCpuPct}%`);
    }
  }
  const statements = await perStatement(Number(args.orders));
  console.log(`\ndispatch apart from ingest, 100,000 available drivers, ${SECONDS} s per arm, ${ROUNDS} rounds, assign_batch's plans ${args.plans}`);
  console.log(`${"orders/s".padStart(9)} ${"process CPU %".padStart(15)} ${"PostgreSQL CPU %".padStart(18)}`);
  for (const rate of RATES) {
    const of = arms.filter((a) => a.rate === rate);
    console.log(`${String(rate).padStart(9)} ${of.map((a) => a.processCpuPct).join(" / ").padStart(15)} ${of.map((a) => a.postgresCpuPct).join(" / ").padStart(18)}`);
  }
  console.log(`per order, one at a time, ms: ${JSON.stringify(statements)}`);
  const stem = resultStem("dispatch-cost");
  const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
  await Bun.write(`${stem}.json`, JSON.stringify({
    parameters: { drivers: 100_000, seconds: SECONDS, rounds: ROUNDS, rates: RATES, orders: Number(args.orders), plans: args.plans },
    machine: { cpus: navigator.hardwareConcurrency, commit },
    arms, perOrderMs: statements,
  }, null, 2));
  console.log(`\nwritten ${stem}.json`);
} finally {
  await sql.end({ timeout: 5 });
  await scratch.drop();
}
