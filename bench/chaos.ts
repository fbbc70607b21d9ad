/**
 * `bun run chaos [-- --phones 2000 --rate 1000 --positions 200000 --faults full|short|<name,name…> --cut-seconds 60]`
 *
 * The bad day, on purpose: QoS 1 phones with outboxes publish through two bridges and two position workers (each
 * under its supervisor) while worker and bridge processes are SIGKILLed, Kafka, PostgreSQL (immediate) and Mosquitto
 * restart, and PostgreSQL is cut off. Then it proves from the phones' own logs that every acknowledged position is in
 * the trail exactly once or dead-lettered with a reason (bench/chaos/accounting.ts). Prints a table, writes JSON under
 * bench/results/, and exits 1 on any loss. Restarts the stack's shared PostgreSQL, Kafka and Mosquitto: run it alone.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { FAULT_NAMES, type FaultName } from "./chaos/faults.ts";
import { runChaos } from "./chaos/run.ts";

const PLANS: Record<string, FaultName[]> = {
  // The issue's bad day: five worker kills, a bridge kill (the other bridge keeps running), Kafka, PostgreSQL
  // (immediate) and Mosquitto restarts, and a cut of PostgreSQL.
  full: [
    "worker-sigkill", "bridge-sigkill", "worker-sigkill", "kafka-restart", "worker-sigkill",
    "postgres-immediate-restart", "worker-sigkill", "mosquitto-restart", "postgres-cut", "worker-sigkill",
  ],
  short: ["worker-sigkill", "mosquitto-restart"],
};

const { values: args } = parseArgs({
  options: {
    phones: { type: "string", default: "2000" },
    rate: { type: "string", default: "1000" },
    positions: { type: "string", default: "200000" },
    faults: { type: "string", default: "full" },
    "cut-seconds": { type: "string", default: "60" },
    "max-rss-bridge": { type: "string", default: "400" },
    "max-rss-worker": { type: "string", default: "800" },
  },
  strict: true,
});
const faults = (PLANS[args.faults!] ?? args.faults!.split(",")) as FaultName[];
const unknown = faults.filter((f) => !FAULT_NAMES.includes(f));
if (unknown.length > 0) throw new Error(`unknown faults ${unknown.join(", ")}; known: ${FAULT_NAMES.join(", ")}, or full, short`);

const run = `${Date.now().toString(36)}`;
const report = await runChaos({
  run,
  phones: Number(args.phones),
  rate: Number(args.rate),
  minPositions: Number(args.positions),
  faults,
  cutSeconds: Number(args["cut-seconds"]),
  maxRssMb: { bridge: Number(args["max-rss-bridge"]), positions: Number(args["max-rss-worker"]) },
  patienceMs: 300_000,
  log: (line) => console.error(line),
});

const a = report.accounting;
console.log("\nfault                        target              at (s)  fault (s)  recovery (s)");
for (const f of report.faults) {
  console.log(
    `${f.fault.padEnd(28)} ${f.target.slice(0, 18).padEnd(18)} ${f.injectedAtS.toFixed(0).padStart(7)} ${f.faultS.toFixed(1).padStart(10)} ${(f.recoveryS?.toFixed(1) ?? "NOT RECOVERED").padStart(13)}`,
  );
}
console.log(`\npositions sent ${a.sent}, acknowledged ${a.acknowledged}, applied ${a.applied}, dead-lettered ${a.deadLettered} ${JSON.stringify(a.deadLetterReasons)}, LOST ${a.lost}`);
console.log(`in the trail and the DLQ ${a.appliedAndDeadLettered}, in the trail but never sent ${a.neverSent}, driver states not at their latest position ${a.stateMismatches}, duplicate transitions ${a.duplicateTransitions}`);
console.log(`outboxes drained ${report.phonesDrained}, drain ${report.drainS.toFixed(1)} s, final consumer lag ${report.finalLag}, max RSS MB ${JSON.stringify(report.maxRssMb)}${report.overMemoryBound.length ? `, OVER BOUND ${report.overMemoryBound.join(", ")}` : ""}`);
if (report.servicesLost.length) console.log(`services whose supervisor gave up: ${report.servicesLost.join(", ")}`);
console.log(`services' output: .stack/logs/chaos-${run}-*.log`);
console.log(report.ok ? "\nOK: nothing lost" : "\nFAILED");

const dir = new URL("../bench/results/", import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const file = `${dir}chaos-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), commit, ...report }, null, 2));
console.log(`wrote ${file}`);
process.exit(report.ok ? 0 : 1);
