/**
 * Where a Node process's CPU went: reads a V8 CPU profile (`node --cpu-prof`, e.g. a bridge or worker run with
 * NODE_CPU_PROFILE_DIR, see tools/node-workers.ts) and prints self time by module and the hottest functions, as
 * shares of the process's busy (non-idle) time. A bundle's modules are told apart by the `// path` comment Bun's
 * bundler writes before each one.
 *
 *   bun tools/cpu-profile-summary.ts FILE.cpuprofile [--top 25] [--json]
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string", default: "25" }, json: { type: "boolean", default: false } },
});
const file = positionals[0];
if (!file) throw new Error("usage: bun tools/cpu-profile-summary.ts FILE.cpuprofile [--top 25] [--json]");
const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;

/** Each bundled file's module starts, as [first line (0-based), module path], sorted by line. */
const moduleStarts = new Map<string, [number, string][]>();
function moduleOf(url: string, line: number): string {
  if (!url) return "(native)";
  if (url.startsWith("node:")) return "node:internal";
  if (!url.startsWith("file://")) return url;
  let starts = moduleStarts.get(url);
  if (!starts) {
    starts = [];
    try {
      const lines = readFileSync(fileURLToPath(url), "utf8").split("\n");
      lines.forEach((text, i) => {
        const m = /^\/\/ (\S+\.(?:ts|js|mjs|cjs|json))$/.exec(text);
        if (m) starts!.push([i, m[1]!.replace(/^node_modules\/(@[^/]+\/[^/]+|[^/]+)\/.*/, "$1")]);
      });
    } catch {
      // the bundle is gone: report the file itself
    }
    moduleStarts.set(url, starts);
  }
  let found = url.split("/").at(-1)!;
  for (const [start, name] of starts) {
    if (start > line) break;
    found = name;
  }
  return found;
}

// Self time per node: the sampling interval after each sample belongs to the sampled node.
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
}
const byModule = new Map<string, number>();
const byFunction = new Map<string, number>();
let busyUs = 0;
let idleUs = 0;
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  if (us === 0) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  if (functionName === "(idle)") {
    idleUs += us;
    continue;
  }
  busyUs += us;
  const module = functionName.startsWith("(") ? functionName : moduleOf(url, lineNumber);
  byModule.set(module, (byModule.get(module) ?? 0) + us);
  const fn = `${functionName || "(anonymous)"} ${module}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
}

const top = Number(args.top);
const pct = (us: number) => +((100 * us) / busyUs).toFixed(1);
const ranked = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
const summary = {
  file,
  total_s: +((profile.endTime - profile.startTime) / 1e6).toFixed(1),
  busy_s: +(busyUs / 1e6).toFixed(1),
  idle_s: +(idleUs / 1e6).toFixed(1),
  by_module_pct_of_busy: Object.fromEntries(ranked(byModule).map(([k, v]) => [k, pct(v)])),
  by_function_pct_of_busy: Object.fromEntries(ranked(byFunction).map(([k, v]) => [k, pct(v)])),
};
if (args.json) console.log(JSON.stringify(summary, null, 1));
else {
  console.log(`${file}: ${summary.busy_s} s busy of ${summary.total_s} s`);
  console.log("\nself time by module (% of busy)");
  for (const [k, v] of Object.entries(summary.by_module_pct_of_busy)) console.log(`${String(v).padStart(6)}  ${k}`);
  console.log("\nhottest functions (% of busy)");
  for (const [k, v] of Object.entries(summary.by_function_pct_of_busy)) console.log(`${String(v).padStart(6)}  ${k}`);
}
