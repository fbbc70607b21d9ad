/**
 * Compares sets of `bench:e2e` results: min / median / max of each figure over a set's runs, side by side.
 *
 *   bun bench/e2e-compare.ts --name fleet-mix "fleet mix 0.2=e2e-A.json,e2e-B.json,e2e-C.json" "fixed batch 4=e2e-D.json,…"
 *
 * Files are looked up in bench/results/ unless given with a directory. Each set must hold runs of one offered load
 * (one result per file). Prints a table and writes bench/results/e2e-<name>-<time>.json with a bar chart (.svg) of the
 * server's CPU per process (medians). Not a benchmark itself: it reads committed results.
 */
import { parseArgs } from "node:util";
import type { RateResult } from "./support/e2e-result.ts";
import { resultStem, writePlot } from "./support/plot.ts";
import { spread, type Spread } from "./support/spread.ts";

/** The server side: every process but the benchmark and its simulated fleet. */
const SERVER_GROUPS = ["bridge", "positions", "mosquitto", "kafka", "postgres"] as const;
const groupOf = (name: string) => SERVER_GROUPS.find((g) => name.startsWith(g));

export function figuresOf(run: RateResult) {
  const cpuByGroup = Object.fromEntries(SERVER_GROUPS.map((g) => [g, 0])) as Record<(typeof SERVER_GROUPS)[number], number>;
  for (const p of run.processes) {
    const group = groupOf(p.name);
    if (group) cpuByGroup[group] += p.cpuPercent;
  }
  const serverCores = run.serverCpuPercent / 100;
  return {
    offeredPositionsPerS: run.offeredRate,
    mqttMessagesPerS: run.messageRate,
    positionsSentPerS: run.sentRate,
    positionsAppliedPerS: run.appliedRate,
    serverCpuPercent: run.serverCpuPercent,
    serverCoresPer10kApplied: run.appliedRate > 0 ? serverCores / (run.appliedRate / 10_000) : Number.NaN,
    serverCoresPer1kMessages: run.messageRate > 0 ? serverCores / (run.messageRate / 1_000) : Number.NaN,
    freshnessSendP99S: run.freshnessSend.p99,
    freshnessDeviceP99S: run.freshnessDevice.p99,
    ...Object.fromEntries(SERVER_GROUPS.map((g) => [`cpuPercent.${g}`, cpuByGroup[g]])),
  } as Record<string, number>;
}

async function readRun(file: string): Promise<RateResult> {
  const path = file.includes("/") ? file : `bench/results/${file}`;
  const body = (await Bun.file(path).json()) as { results: RateResult[] };
  if (body.results.length !== 1) throw new Error(`${path}: ${body.results.length} results; compare runs of one offered load`);
  return body.results[0]!;
}

async function main() {
  const { values, positionals } = parseArgs({ options: { name: { type: "string", default: "compare" } }, allowPositionals: true });
  if (positionals.length === 0) throw new Error('usage: bun bench/e2e-compare.ts --name NAME "label=a.json,b.json,c.json" …');
  const sets: { label: string; files: string[]; figures: Record<string, Spread> }[] = [];
  for (const arg of positionals) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new Error(`"${arg}": expected label=file,file,…`);
    const files = arg.slice(eq + 1).split(",").filter(Boolean);
    const runs = (await Promise.all(files.map(readRun))).map(figuresOf);
    const keys = Object.keys(runs[0]!);
    sets.push({ label: arg.slice(0, eq), files, figures: Object.fromEntries(keys.map((k) => [k, spread(runs.map((r) => r[k]!))])) });
  }

  const fmt = (s: Spread) => {
    const d = Math.abs(s.median) < 10 ? 2 : 0;
    return `${s.min.toFixed(d)} / ${s.median.toFixed(d)} / ${s.max.toFixed(d)}`;
  };
  const keys = Object.keys(sets[0]!.figures);
  const width = Math.max(...keys.map((k) => k.length));
  console.log(`${"figure (min / median / max)".padEnd(width)}  ${sets.map((s) => `${s.label} (${s.files.length} runs)`.padEnd(26)).join("  ")}`);
  for (const k of keys) console.log(`${k.padEnd(width)}  ${sets.map((s) => fmt(s.figures[k]!).padEnd(26)).join("  ")}`);

  const stem = resultStem(`e2e-${values.name}`);
  await Bun.write(`${stem}.json`, JSON.stringify({ measured: new Date().toISOString(), sets }, null, 2));
  await writePlot(`${stem}.svg`, {
    title: "server CPU by process, median of runs (% of one core)",
    data: {
      values: sets.flatMap((s) =>
        SERVER_GROUPS.map((g) => ({ set: s.label, process: g, cpu: s.figures[`cpuPercent.${g}`]!.median })),
      ),
    },
    mark: "bar",
    encoding: {
      y: { field: "set", type: "nominal", title: null },
      x: { field: "cpu", type: "quantitative", title: "% of one core", stack: "zero" },
      color: { field: "process", type: "nominal" },
    },
    width: 480,
  });
  console.log(`\nwrote ${stem}.json and .svg`);
}

if (import.meta.main) await main();
