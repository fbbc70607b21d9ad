/** CPU and memory of running processes, read from /proc (Linux), for the benchmarks' per-process tables. */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on Linux). */
export const CLK_TCK = 100;
const PAGE = 4096;

/** CPU ticks used so far and resident memory now; undefined once the process is gone. */
export function procSample(pid: number): { cpuTicks: number; rssBytes: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { cpuTicks: Number(fields[11]) + Number(fields[12]), rssBytes: Number(fields[21]) * PAGE };
  } catch {
    return undefined;
  }
}

/** The pids whose command line matches `pattern` (pgrep -f). */
export function pidsOf(pattern: string): number[] {
  const out = Bun.spawnSync(["pgrep", "-f", pattern]).stdout.toString().trim();
  return out ? out.split("\n").map(Number) : [];
}

/** CPU seconds and resident bytes summed over `pids` (processes gone count as nothing). */
export function sampleAll(pids: readonly number[]): { cpuSeconds: number; rssBytes: number } {
  let cpuSeconds = 0;
  let rssBytes = 0;
  for (const pid of pids) {
    const s = procSample(pid);
    if (s) {
      cpuSeconds += s.cpuTicks / CLK_TCK;
      rssBytes += s.rssBytes;
    }
  }
  return { cpuSeconds, rssBytes };
}

/** The direct children of `parent`. */
export function childPids(parent: number): number[] {
  const out = Bun.spawnSync(["pgrep", "-P", String(parent)]).stdout.toString().trim();
  return out ? out.split("\n").map(Number) : [];
}

/** The 1, 5 and 15 minute load averages. */
export function loadAverage(): number[] {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}
