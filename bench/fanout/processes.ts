/** CPU and RSS of processes from /proc, and a Prometheus scrape with histogram quantiles (for the worker's figures). */
import { readFileSync } from "node:fs";

const CLK_TCK = 100;
const PAGE = 4096;

export interface ProcSample {
  cpuSeconds: number;
  rssBytes: number;
}

export function procSample(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLK_TCK, rssBytes: Number(fields[21]) * PAGE };
  } catch {
    return undefined;
  }
}

/** The sum over `pids` (processes gone count as nothing). */
export function sampleAll(pids: readonly number[]): ProcSample {
  let cpuSeconds = 0;
  let rssBytes = 0;
  for (const pid of pids) {
    const s = procSample(pid);
    if (s) {
      cpuSeconds += s.cpuSeconds;
      rssBytes += s.rssBytes;
    }
  }
  return { cpuSeconds, rssBytes };
}

export function childPids(parent: number): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(parent)]).stdout.toString().trim();
  return out ? out.split("\n").map(Number) : [];
}

export function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}

export async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line) continue;
    const space = line.lastIndexOf(" ");
    const name = line.slice(0, space).replace(/,?process="[^"]*"/, "").replace("{}", "");
    values.set(name, (values.get(name) ?? 0) + Number(line.slice(space + 1)));
  }
  return values;
}

/** A quantile (s) from Prometheus histogram buckets (linear inside the bucket), over the delta of two scrapes. */
export function histogramQuantile(before: Map<string, number>, after: Map<string, number>, metric: string, q: number) {
  const buckets: { le: number; count: number }[] = [];
  for (const [key, value] of after) {
    const m = new RegExp(`^${metric}_bucket\\{le="([^"]+)"\\}$`).exec(key);
    if (m) buckets.push({ le: m[1] === "+Inf" ? Infinity : Number(m[1]), count: value - (before.get(key) ?? 0) });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return NaN;
  let previous = { le: 0, count: 0 };
  for (const b of buckets) {
    if (b.count >= q * total) {
      if (b.le === Infinity) return previous.le;
      const inside = b.count - previous.count;
      return previous.le + (b.le - previous.le) * (inside === 0 ? 0 : (q * total - previous.count) / inside);
    }
    previous = b;
  }
  return NaN;
}
