/**
 * `bun run bench:api`: GET /track/{id} under load. Starts the API (bun api/server.ts) on the configured database,
 * makes sure some orders have drivers (seeds a few hundred through the real SQL functions if not), then runs wrk
 * across many order ids and prints req/s and latency percentiles; the JSON goes to bench/results/api-<time>.json.
 *
 *   bun run bench:api [--duration 10] [--threads 2] [--connections 64] [--rate 10000] [--seed 300] [--port N]
 *                     [--with-ingest-cmd "<command>"]   (runs the command in the background during the load)
 *                     [--ingest-ready "<text>"] [--ingest-warmup 20]   (the load starts that many seconds after
 *                                                                     the command has printed the text)
 *                     [--as tracker|customer|operations|none]   (the bearer token each request carries: the
 *                                     order's tracking link (default), its customer's token, one operator's; none
 *                                     measures refusals, 401)
 *
 * Two runs: `max`, every connection sending as fast as answers come (the most the API serves, latency then being
 * mostly queueing), and `paced`, the connections together offering `--rate` requests/s (each waits its share of a
 * second between requests), whose percentiles are the latency a client sees at that load.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import type { Role } from "../api/auth/principal.ts";
import { createTokenService } from "../api/auth/tokens.ts";
import { authConfig, config } from "../lib/config.ts";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { cellOf } from "../lib/h3.ts";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    threads: { type: "string", default: "2" },
    connections: { type: "string", default: "64" },
    rate: { type: "string", default: "10000" },
    seed: { type: "string", default: "300" },
    port: { type: "string" },
    "with-ingest-cmd": { type: "string" },
    "ingest-ready": { type: "string" },
    "ingest-warmup": { type: "string", default: "20" },
    as: { type: "string", default: "tracker" },
  },
});
const CALLERS = ["tracker", "customer", "operations", "none"] as const;
type Caller = (typeof CALLERS)[number];
if (!CALLERS.includes(args.as as Caller)) throw new Error(`--as must be one of ${CALLERS.join(", ")}`);
const caller = args.as as Caller;
const ROOT = new URL("../", import.meta.url).pathname;
const MIN_TRACKED_ORDERS = 50;
const MAX_IDS_IN_SCRIPT = 1_000;

async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);
  return port;
}

async function trackedOrderIds(sql: Sql, limit: number): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    select id from orders where status in ('assigned', 'picked_up') and driver_id is not null
    order by random() limit ${limit}`;
  return rows.map((r) => r.id);
}

/** Orders with drivers, made as the app makes them: created, confirmed, then given to the nearest driver. */
async function seedTrackedOrders(sql: Sql, count: number): Promise<void> {
  const centre = { lat: 40.7359, lon: -73.9911 };
  const around = (km: number) => ({
    lat: centre.lat + ((Math.random() - 0.5) * km) / 111,
    lon: centre.lon + ((Math.random() - 0.5) * km) / 84,
  });
  const res = config().h3Resolution;
  const restaurants = Array.from({ length: 20 }, (_, i) => ({ name: `bench restaurant ${i}`, ...around(8) }));
  const restaurantIds = (
    await sql<{ id: string }[]>`
      insert into restaurants (name, location, h3)
      select r.name, st_setsrid(st_makepoint(r.lon, r.lat), 4326)::geography, r.h3
      from unnest(${sql.array(restaurants.map((r) => r.name))}::text[],
                  ${sql.array(restaurants.map((r) => r.lat))}::float8[],
                  ${sql.array(restaurants.map((r) => r.lon))}::float8[],
                  ${sql.array(restaurants.map((r) => cellOf(r.lat, r.lon, res).toString()))}::bigint[])
           as r(name, lat, lon, h3)
      returning id`
  ).map((r) => r.id);
  const [customer] = await sql<{ id: string }[]>`
    insert into customers (name, location)
    values ('bench customer', st_setsrid(st_makepoint(${centre.lon}, ${centre.lat}), 4326)::geography) returning id`;

  const drivers = Array.from({ length: count }, () => around(8));
  const driverIds = (
    await sql<{ id: string }[]>`insert into drivers (name) select 'bench driver' from generate_series(1, ${count}) returning id`
  ).map((r) => r.id);
  await sql`
    insert into driver_state (driver_id, status, position, lat, lon, h3, position_at, received_at)
    select id, 'available', st_setsrid(st_makepoint(lon, lat), 4326)::geography, lat, lon, h3, now(), now()
    from unnest(${sql.array(driverIds)}::uuid[], ${sql.array(drivers.map((d) => d.lat))}::float8[],
                ${sql.array(drivers.map((d) => d.lon))}::float8[],
                ${sql.array(drivers.map((d) => cellOf(d.lat, d.lon, res).toString()))}::bigint[]) as x(id, lat, lon, h3)`;

  const orderIds = (
    await sql<{ id: string }[]>`
      insert into orders (customer_id, restaurant_id, delivery_location, items)
      select ${customer!.id}, r, st_setsrid(st_makepoint(${centre.lon} + (random() - 0.5) * 0.05,
                                                          ${centre.lat} + (random() - 0.5) * 0.05), 4326)::geography,
             '[{"name": "bench meal", "qty": 1, "price_cents": 1000}]'::jsonb
      from unnest(${sql.array(Array.from({ length: count }, (_, i) => restaurantIds[i % restaurantIds.length]!))}::uuid[])
           as r
      returning id`
  ).map((r) => r.id);
  for (const id of orderIds) {
    await sql`select order_transition(${id}, 'confirm')`;
    await sql`select assign_nearest_driver(${id}, null, 20000)`.catch(() => {}); // a few may find no one: fine
  }
}

/**
 * The bearer token of each order's caller, as the IdP stand-in would mint it (sim/identity.ts): its tracking
 * link, its customer, or one operator for all; none without authentication.
 */
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

function luaScript(ids: string[], tokens: (string | null)[], delayMs: number): string {
  return `-- generated by bench/api.ts: round-robin over ${ids.length} tracked orders, each thread from its own offset
local ids = { ${ids.map((id) => `"${id}"`).join(", ")} }
local auth = { ${tokens.map((t) => (t ? `"Bearer ${t}"` : "false")).join(", ")} }
local n = #ids
local i = 0
setup = function(thread)
  thread:set("start", math.random(n))
end
init = function(args)
  i = start or 0
end
request = function()
  i = i % n + 1
  if auth[i] then return wrk.format("GET", "/track/" .. ids[i], { ["Authorization"] = auth[i] }) end
  return wrk.format("GET", "/track/" .. ids[i])
end
${delayMs > 0 ? pacing(delayMs) : ""}`;
}

/** wrk waits whole milliseconds: a fractional mean wait is drawn as its floor or ceiling in the right proportion. */
function pacing(delayMs: number): string {
  const floor = Math.floor(delayMs);
  return `local fraction = ${(delayMs - floor).toFixed(3)}
delay = function()
  if math.random() < fraction then return ${floor + 1} end
  return ${floor}
end
`;
}

interface WrkResult {
  requests: number;
  requestsPerSecond: number;
  latencyMs: Record<"p50" | "p75" | "p90" | "p99", number>;
  non2xx: number;
  socketErrors: string | null;
}

function parseWrk(out: string): WrkResult {
  const number = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN);
  const percentile = (p: number) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(out);
    if (!m) return Number.NaN;
    const factor = { us: 0.001, ms: 1, s: 1000 }[m[2] as "us" | "ms" | "s"];
    return Number(m[1]) * factor;
  };
  return {
    requests: number(/(\d+) requests in/),
    requestsPerSecond: number(/Requests\/sec:\s+([\d.]+)/),
    latencyMs: { p50: percentile(50), p75: percentile(75), p90: percentile(90), p99: percentile(99) },
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: /Socket errors: (.*)/.exec(out)?.[1] ?? null,
  };
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
  const exited = ingest.exited.then((code) => code);
  const first = await Promise.race([isReady.then(() => "ready" as const), exited]);
  if (first !== "ready") throw new Error(`the ingest command exited (${first}) before it was ready`);
}

async function waitForHealth(base: string, api: Bun.Subprocess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await fetch(`${base}/health`).catch(() => undefined))?.status !== 200) {
    if (api.exitCode !== null) throw new Error(`the API exited (${api.exitCode}) before answering /health`);
    if (Date.now() > deadline) throw new Error("the API did not answer /health within 30 s");
    await Bun.sleep(100);
  }
}

async function main() {
  const duration = Number(args.duration);
  const threads = Number(args.threads);
  const connections = Number(args.connections);
  // With an ingest command, `{db}` in it names the database it ingests into, and the API reads that one: its
  // drivers move under the load, so the notices really do empty the track cache while it is measured.
  const ingestDb = `bench_api_${Date.now() % 1e8}`;
  const ingestCmd = args["with-ingest-cmd"]?.replaceAll("{db}", ingestDb);
  const databaseUrl = ingestCmd?.includes(ingestDb)
    ? Object.assign(new URL(config().databaseUrl), { pathname: `/${ingestDb}` }).toString()
    : config().databaseUrl;
  let ingest: Bun.Subprocess | undefined;
  let api: Bun.Subprocess | undefined;
  let sql: Sql | undefined;
  try {
    if (ingestCmd) {
      // Its own session, so the whole command tree stops with it.
      ingest = Bun.spawn(["setsid", "bash", "-c", ingestCmd], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
      console.log(`ingest running: ${ingestCmd}`);
      await ingestReady(ingest, args["ingest-ready"]);
    }
    sql = connectDatabase(databaseUrl, { max: 4, application: "bench-api" });
    const [schema] = await sql<{ ok: boolean }[]>`select to_regclass('orders') is not null as ok`;
    if (!schema?.ok) throw new Error("the database has no schema: run `bash bin/stack up` first");

    let ids = await trackedOrderIds(sql, MAX_IDS_IN_SCRIPT);
    if (ids.length < MIN_TRACKED_ORDERS && !ingestCmd) {
      console.log(`only ${ids.length} orders with drivers: seeding ${args.seed}`);
      await seedTrackedOrders(sql, Number(args.seed));
      ids = await trackedOrderIds(sql, MAX_IDS_IN_SCRIPT);
    }
    if (ids.length === 0) throw new Error("no orders with drivers to track");
    const tokens = await tokensFor(sql, ids, caller);
    const authorization = (i: number): Record<string, string> =>
      tokens[i] ? { authorization: `Bearer ${tokens[i]}` } : {};

    const port = args.port ? Number(args.port) : await freePort();
    const base = `http://127.0.0.1:${port}`;
    api = Bun.spawn(["bun", "api/server.ts"], {
      cwd: ROOT,
      env: { ...process.env, API_PORT: String(port), DATABASE_URL: databaseUrl },
      stdout: "ignore",
      stderr: "inherit",
    });
    {
      await waitForHealth(base, api);
      const sample = await fetch(`${base}/track/${ids[0]}`, { headers: authorization(0) });
      const body = (await sample.json()) as { driver?: unknown };
      const expected = caller === "none" ? 401 : 200;
      if (sample.status !== expected || (expected === 200 && !body.driver)) {
        throw new Error(`GET /track/${ids[0]} answered ${sample.status}`);
      }
      if (ingest) {
        console.log(`ingest ready; load starts in ${args["ingest-warmup"]} s`);
        await Bun.sleep(Number(args["ingest-warmup"]) * 1000);
        if (ingest.exitCode !== null) throw new Error(`the ingest command exited (${ingest.exitCode}) before the load`);
      }

      const rate = Number(args.rate);
      const runs: { name: string; offered: number | null; result: WrkResult; out: string }[] = [];
      for (const run of [{ name: "max", offered: null }, ...(rate > 0 ? [{ name: "paced", offered: rate }] : [])]) {
        // Each connection waits so that all of them together offer `rate` requests per second; a wait starts when
        // the answer arrives, so the answer's own time (about half a millisecond unloaded) comes off it.
        const delayMs = run.offered ? Math.max(0.01, (connections * 1000) / run.offered - 0.5) : 0;
        const scriptPath = `${tmpdir()}/bench-api-${process.pid}-${run.name}.lua`;
        writeFileSync(scriptPath, luaScript(ids, tokens, delayMs));
        console.log(`wrk ${run.name}: ${duration}s, ${threads} threads, ${connections} connections, ${ids.length} order ids, as ${caller}` +
          (run.offered ? `, offering ${run.offered} req/s` : ""));
        const wrk = Bun.spawn(
          ["wrk", `-t${threads}`, `-c${connections}`, `-d${duration}s`, "--latency", "-s", scriptPath, base],
          { stdout: "pipe", stderr: "inherit" },
        );
        const out = await new Response(wrk.stdout).text();
        if ((await wrk.exited) !== 0) throw new Error(`wrk failed:\n${out}`);
        runs.push({ ...run, result: parseWrk(out), out });
      }

      console.log(`\nGET /track/{order_id} as ${caller}` + (ingestCmd ? " while ingesting" : ""));
      console.log("run      offered      req/s     p50 ms     p90 ms     p99 ms   non-2xx");
      for (const { name, offered, result } of runs) {
        console.log(
          `${name.padEnd(6)} ${String(offered ?? "max").padStart(9)} ${result.requestsPerSecond.toFixed(0).padStart(10)}` +
            ` ${result.latencyMs.p50.toFixed(2).padStart(10)} ${result.latencyMs.p90.toFixed(2).padStart(10)}` +
            ` ${result.latencyMs.p99.toFixed(2).padStart(10)} ${String(result.non2xx).padStart(9)}` +
            (result.socketErrors ? `  socket errors: ${result.socketErrors}` : ""),
        );
      }

      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const file = `${ROOT}bench/results/api-${stamp}.json`;
      mkdirSync(`${ROOT}bench/results`, { recursive: true });
      writeFileSync(
        file,
        `${JSON.stringify(
          {
            benchmark: "api-track",
            at: new Date().toISOString(),
            endpoint: "GET /track/{order_id}",
            duration_s: duration,
            threads,
            connections,
            order_ids: ids.length,
            bearer_token: caller,
            ingest_cmd: ingestCmd ?? null,
            runs: runs.map(({ name, offered, result, out }) => ({
              run: name,
              offered_per_s: offered,
              requests: result.requests,
              requests_per_s: result.requestsPerSecond,
              latency_ms: result.latencyMs,
              non_2xx: result.non2xx,
              socket_errors: result.socketErrors,
              wrk_output: out,
            })),
          },
          null,
          2,
        )}\n`,
      );
      console.log(`\nwrote ${file.slice(ROOT.length)}`);
    }
  } finally {
    if (ingest && ingest.exitCode === null) {
      try {
        process.kill(-ingest.pid, "SIGTERM");
      } catch {
        ingest.kill();
      }
      await ingest.exited;
    }
    if (api) {
      api.kill("SIGTERM");
      await api.exited;
    }
    await sql?.end({ timeout: 5 });
  }
}

await main();
