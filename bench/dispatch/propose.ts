/**
 * `bun run bench:dispatch-propose`: the API's index proposing 8 drivers (api/modules/orders/driver-index.ts), in
 * memory, 100,000 drivers spread over Manhattan with random ids, 20,000 random points, after 0, 100 and 2,000 claims
 * (a claimed driver is skipped until the next read, so a busy API always holds some). µs per proposal, min / median
 * / max of --runs runs; prints a table, writes JSON under bench/results/. Not a test.
 */
import { parseArgs } from "node:util";
import { createDriverIndex, parsePackedDrivers } from "../../api/modules/orders/driver-index.ts";
import { createRng } from "../../lib/random.ts";
import { resultStem } from "../support/plot.ts";
import { spread } from "../support/spread.ts";

const { values: args } = parseArgs({ options: { runs: { type: "string", default: "3" }, drivers: { type: "string", default: "100000" } } });
const RUNS = Number(args.runs);
const DRIVERS = Number(args.drivers);
const CLAIMS = [0, 100, 2_000];
const POINTS = 20_000;

async function run(seed: number): Promise<Record<number, number>> {
  const rng = createRng(seed, "bench-dispatch-propose");
  const bytes = new Uint8Array(32 * DRIVERS);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < DRIVERS; i++) {
    for (let b = 0; b < 16; b++) bytes[i * 32 + b] = Math.floor(rng.between(0, 256));
    view.setFloat64(i * 32 + 16, rng.between(40.70, 40.80));
    view.setFloat64(i * 32 + 24, rng.between(-74.02, -73.93));
  }
  const snapshot = parsePackedDrivers(bytes, Date.now());
  const index = createDriverIndex({ read: async () => snapshot, close: () => {} }, { refreshMs: 60_000, candidates: 8, maxDistanceKm: 15 });
  const points = Array.from({ length: POINTS }, () => [rng.between(40.71, 40.79), rng.between(-74.01, -73.94)] as const);
  const out: Record<number, number> = {};
  await index.refresh();
  let claimed = 0;
  for (const claims of CLAIMS) {
    for (; claimed < claims; claimed++) index.claimed(index.propose(...points[claimed]!)![0]!);
    const started = performance.now();
    for (const [lat, lon] of points) index.propose(lat, lon);
    out[claims] = ((performance.now() - started) * 1000) / POINTS;
  }
  index.close();
  return out;
}

const runs: Record<number, number[]> = {};
for (let r = 1; r <= RUNS; r++) {
  const result = await run(r);
  for (const c of CLAIMS) (runs[c] ??= []).push(result[c]!);
}
const stat = (xs: number[]) => { const s = spread(xs); return { min: +s.min.toFixed(1), median: +s.median.toFixed(1), max: +s.max.toFixed(1) }; };
console.log(`\nthe index's proposal of 8 among ${DRIVERS} drivers, µs each, min / median / max of ${RUNS} runs`);
for (const c of CLAIMS) { const s = stat(runs[c]!); console.log(`${String(c).padStart(6)} claims held  ${s.min} / ${s.median} / ${s.max}`); }
const stem = resultStem("dispatch-propose");
const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
await Bun.write(`${stem}.json`, JSON.stringify({
  parameters: { drivers: DRIVERS, points: POINTS, runs: RUNS, candidates: 8, claims: CLAIMS },
  machine: { cpus: navigator.hardwareConcurrency, commit, dirty: Bun.spawnSync(["git", "status", "--porcelain", "api"]).stdout.toString().trim() !== "" },
  results: CLAIMS.map((c) => ({ claims: c, usPerProposal: runs[c], ...stat(runs[c]!) })),
}, null, 2));
console.log(`\nwritten ${stem}.json`);
