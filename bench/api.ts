/**
 * `bun run bench:api`: GET /track/{id} at constant offered rates, open loop (vegeta: a slow answer does not delay the
 * requests after it, so the latencies include the queueing a real crowd of customers would see).
 *
 *   bun run bench:api [--orders 100000] [--rates 1000,2000,5000] [--seconds 20] [--runs 3] [--hot-share 0.5]
 *                     [--hot-orders 1000] [--processes 1] [--as tracker|customer|operations|none]
 *                     [--with-ingest-cmd "<command>"] [--ingest-ready "<text>"] [--ingest-warmup 20]
 *
 * The orders: `--orders` trackable orders (assigned to a driver each), seeded in bulk into a scratch database, or into
 * the ingest command's database (`{db}` in the command names it) so their drivers move while the API is measured.
 * The mix: `--hot-share` of the requests go to `--hot-orders` orders watched by many (answers the track cache keeps
 * between the database's notices), the rest spread over every order (mostly cold: read from PostgreSQL). The track
 * cache's hit ratio during each run is read from the API's /metrics and reported.
 *
 * For each rate, `--runs` runs of `--seconds`; prints min / median / max of answered/s and p50/p99 latency, and writes
 * JSON under bench/results/api-<time>.json. Not a test.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import type { Role } from "../api/auth/principal.ts";
import { createTokenService } from "../api/auth/tokens.ts";
import { authConfig, config } from "../lib/config.ts";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { generateData } from "../db/generate.ts";
import { freePort } from "../tools/free-port.ts";
import { createScratchDatabase, type ScratchDatabase } from "../tools/scratch-database.ts";
import { serviceUrl } from "../tools/service-url.ts";
import { seedTrackableOrders, trackableOrderIds } from "./api/seed.ts";
import { attack, type AttackReport, type Target, targetLines, vegetaBinary } from "./api/vegeta.ts";
import { createRng } from "../lib/random.ts";

const { values: args } = parseArgs({
  options: {
    orders: { type: "string", default: "100000" },
    rates: { type: "string", default: "1000,2000,5000" },
    seconds: { type: "string", default: "20" },
    runs: { type: "string", default: "3" },
    "hot-share": { type: "string", default: "0.5" },
    "hot-orders": { type: "string", default: "1000" },
    processes: { type: "string", default: "1" },
    "with-ingest-cmd": { type: "string" },
    "ingest-ready": { type: "string" },
    "ingest-warmup": { type: "string", default: "20" },
    as: { type: "string", default: "tracker" },
  },
  strict: true,
});
const CALLERS = ["tracker", "customer", "operations", "none"] as const;
type Caller = (typeof CALLERS)[number];
if (!CALLERS.includes(args.as as Caller)) throw new Error(`--as must be one of ${CALLERS.join(", ")}`);
const caller = args.as as Caller;
const ORDERS = Number(args.orders);
const RATES = args.rates.split(",").map(Number);
const SECONDS = Number(args.seconds);
const RUNS = Number(args.runs);
const HOT_SHARE = Number(args["hot-share"]);
const HOT_ORDERS = Math.min(Number(args["hot-orders"]), ORDERS);
/** Requests in the target list vegeta cycles through: long enough that the cold part rarely repeats within a run. */
const TARGETS = 200_000;
const ROOT = new URL("../", import.meta.url).pathname;

/** The bearer token of each order's caller, as the IdP stand-in mints it: its tracking link, its customer, or one operator. */
async function tokensFor(sql: Sql, ids: string[], as: Caller): Promise<(string | null)[]> {
  if (as === "none") return ids.map(() => null);
  const tokens = createTokenService(authConfig());
  const mint = async (role: Role, sub: string) => (await tokens.mint(role, sub, { ttl: "2h" })).token;
  if (as === "operations") {
    const token = await mint("operations", "bench");
    return ids.map(() => token);
  }
  if (as === "tracker") return Promise.all(ids.map((id) => mint("tracker", id)));
  const rows = await sql<{ id: string; customer_id: string }[]>`
    select id, customer_id from orders where id = any(${sql.array(ids)}::uuid[])`;
  const customerOf = new Map(rows.map((r) => [r.id, r.customer_id]));
  return Promise.all(ids.map((id) => mint("customer", customerOf.get(id)!)));
}

/** Passes the ingest command's stderr through, resolving once it has printed `text` (at once without one). */
async function ingestReady(ingest: Bun.Subprocess<"ignore", "ignore", "pipe">, text: string | undefined) {
  let seen = "";
  let ready: () => void = () => {};
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  if (!text) ready();
  void (async () => {
    for await (const chunk of ingest.stderr) {
      process.stderr.write(chunk);
      seen = (seen + new TextDecoder().decode(chunk)).slice(-4096);
      if (text && seen.includes(text)) ready();
    }
  })();
  const first = await Promise.race([isReady.then(() => "ready" as const), ingest.exited]);
  if (first !== "ready") throw new Error(`the ingest command exited (${first}) before it was ready`);
}

async function waitForHealth(base: string, api: Bun.Subprocess): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${base}/health`).catch(() => undefined))?.status !== 200) {
    if (api.exitCode !== null) throw new Error(`the API exited (${api.exitCode}) before answering /health`);
    if (Date.now() > deadline) throw new Error("the API did not answer /health within 60 s");
    await Bun.sleep(100);
  }
}

/** The track cache's counters summed over the API's processes' answers (each scrape reaches one process). */
async function cacheCounters(base: string, token: string): Promise<{ hits: number; reads: number }> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const sum = (name: string) =>
    text.split("\n").filter((l) => l.startsWith(name)).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
  return { hits: sum("track_cache_hits_total"), reads: sum("track_cache_reads_total") };
}

const summary = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s.at(-1)! };
};

async function main() {
  await vegetaBinary(); // installed before anything is started, so its first build does not land inside a run
  const ingestDb = `bench_api_${Date.now() % 1e8}`;
  const ingestCmd = args["with-ingest-cmd"]?.replaceAll("{db}", ingestDb);
  let scratch: ScratchDatabase | undefined;
  let ingest: Bun.Subprocess | undefined;
  let api: Bun.Subprocess | undefined;
  let sql: Sql | undefined;
  let stopping: Promise<void> | undefined;
  /** The ingest command (its process group), the API, the connections and the scratch database; once. */
  const stopAll = () =>
    (stopping ??= (async () => {
      // The API and this script's connections first: the ingest command drops its database when it stops.
      if (api) {
        api.kill("SIGTERM");
        await api.exited;
      }
      await sql?.end({ timeout: 5 });
      if (ingest && ingest.exitCode === null) {
        try {
          process.kill(-ingest.pid, "SIGTERM");
        } catch {
          ingest.kill();
        }
        await ingest.exited;
      }
      await scratch?.drop();
    })());
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void stopAll().finally(() => process.exit(130)));
  }
  try {
    let databaseUrl: string;
    if (ingestCmd) {
      ingest = Bun.spawn(["setsid", "bash", "-c", ingestCmd], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
      console.log(`ingest running: ${ingestCmd}`);
      await ingestReady(ingest, args["ingest-ready"]);
      // Its fleet's drivers come online over the first seconds; the orders are given to drivers that are online.
      console.log(`ingest ready; seeding and load start in ${args["ingest-warmup"]} s`);
      await Bun.sleep(Number(args["ingest-warmup"]) * 1000);
      if (ingest.exitCode !== null) throw new Error(`the ingest command exited (${ingest.exitCode}) before the load`);
      databaseUrl = ingestCmd.includes(ingestDb)
        ? Object.assign(new URL(config().databaseUrl), { pathname: `/${ingestDb}` }).toString()
        : config().databaseUrl;
      sql = connectDatabase(databaseUrl, { max: 4, application: "bench-api" });
    } else {
      scratch = await createScratchDatabase(ingestDb);
      databaseUrl = scratch.url;
      sql = connectDatabase(databaseUrl, { max: 4, application: "bench-api" });
      console.error(`generating ${ORDERS} drivers, 2,000 restaurants, 20,000 customers…`);
      await generateData(sql, {
        drivers: ORDERS, restaurants: 2_000, customers: 20_000, orders: 0, mode: "truncate", seed: 11, city: "nyc",
        online: true, progress: false,
      });
    }
    let ids = await trackableOrderIds(sql, ORDERS);
    if (ids.length < ORDERS) {
      console.error(`seeding ${ORDERS - ids.length} trackable orders…`);
      await seedTrackableOrders(sql, ORDERS - ids.length);
      ids = await trackableOrderIds(sql, ORDERS);
    }
    if (ids.length === 0) throw new Error("no trackable orders (no available drivers to assign?)");
    console.error(`minting ${ids.length} ${caller} tokens…`);
    const tokens = await tokensFor(sql, ids, caller);
    const operator = (await createTokenService(authConfig()).mint("operations", "bench-metrics", { ttl: "2h" })).token;

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    // The API as deployed: its own database role, under its supervisor, N processes sharing the port.
    api = Bun.spawn(["bun", "api/index.ts", "--processes", args.processes], {
      cwd: ROOT,
      env: { ...process.env, API_PORT: String(port), DATABASE_URL: serviceUrl(databaseUrl, "tracking_api") },
      stdout: "ignore",
      stderr: "inherit",
    });
    await waitForHealth(base, api);
    const probe = await fetch(`${base}/track/${ids[0]}`, { headers: tokens[0] ? { authorization: `Bearer ${tokens[0]}` } : {} });
    const expected = caller === "none" ? 401 : 200;
    if (probe.status !== expected) throw new Error(`GET /track/${ids[0]} answered ${probe.status}, expected ${expected}`);

    // The request mix, drawn once: hot orders (watched by many) and the long tail.
    const rng = createRng(7, "bench-api");
    const picks = Array.from({ length: TARGETS }, () =>
      rng.next() < HOT_SHARE ? Math.floor(rng.next() * HOT_ORDERS) : Math.floor(rng.next() * ids.length),
    );
    const targetsFile = `${tmpdir()}/bench-api-${process.pid}.targets`;
    writeFileSync(
      targetsFile,
      targetLines(
        picks.map((i): Target => ({ url: `${base}/track/${ids[i]}`, headers: tokens[i] ? { Authorization: `Bearer ${tokens[i]}` } : {} })),
      ),
    );

    const runs: (AttackReport & { rate: number; run: number; cacheHitRatio: number | null })[] = [];
    for (const rate of RATES) {
      for (let run = 1; run <= RUNS; run++) {
        const before = await cacheCounters(base, operator);
        const report = await attack(targetsFile, rate, SECONDS);
        const after = await cacheCounters(base, operator);
        const reads = after.reads - before.reads;
        // With several processes a scrape reaches one of them: the ratio is that process's (a sample).
        const cacheHitRatio = reads > 0 ? +((after.hits - before.hits) / reads).toFixed(3) : null;
        runs.push({ ...report, rate, run, cacheHitRatio });
        console.error(`${rate}/s run ${run}: answered ${report.answeredPerS}/s, p50 ${report.latencyMs.p50} ms, p99 ${report.latencyMs.p99} ms, success ${report.successRatio}, cache hits ${cacheHitRatio}`);
      }
    }

    console.log(`\nGET /track/{order_id} as ${caller}, ${ids.length} orders, ${HOT_SHARE * 100}% of requests on ${HOT_ORDERS} hot orders,` +
      ` ${args.processes} API process(es)${ingestCmd ? ", while ingesting" : ""}; min / median / max of ${RUNS} runs of ${SECONDS} s`);
    console.log("offered/s    answered/s (min/med/max)    p50 ms (min/med/max)      p99 ms (min/med/max)      success   cache hits");
    const rows = RATES.map((rate) => {
      const mine = runs.filter((r) => r.rate === rate);
      return {
        offeredPerS: rate,
        answeredPerS: summary(mine.map((r) => r.answeredPerS)),
        p50Ms: summary(mine.map((r) => r.latencyMs.p50)),
        p99Ms: summary(mine.map((r) => r.latencyMs.p99)),
        successRatio: summary(mine.map((r) => r.successRatio)),
        cacheHitRatio: summary(mine.map((r) => r.cacheHitRatio ?? 0)),
      };
    });
    const three = (s: { min: number; median: number; max: number }) => `${s.min} / ${s.median} / ${s.max}`.padEnd(25);
    for (const r of rows) {
      console.log(`${String(r.offeredPerS).padStart(9)}    ${three(r.answeredPerS)}   ${three(r.p50Ms)} ${three(r.p99Ms)} ${String(r.successRatio.min).padStart(7)}   ${r.cacheHitRatio.median}`);
    }

    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const file = `bench/results/api-${stamp}.json`;
    mkdirSync(`${ROOT}bench/results`, { recursive: true });
    writeFileSync(
      `${ROOT}${file}`,
      `${JSON.stringify(
        {
          benchmark: "api-track",
          generator: "vegeta (open loop, constant rate)",
          command: `bun run bench:api -- ${process.argv.slice(2).join(" ")}`.trim(),
          commit: Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim(),
          load: (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).map(Number),
          at: new Date().toISOString(),
          orders: ids.length, hotShare: HOT_SHARE, hotOrders: HOT_ORDERS, caller, processes: Number(args.processes),
          seconds: SECONDS, ingestCmd: ingestCmd ?? null,
          rows,
          runs,
        },
        null,
        2,
      )}\n`,
    );
    console.log(`\nwrote ${file}`);
  } finally {
    await stopAll();
  }
}

await main();
