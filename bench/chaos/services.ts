/**
 * The chaos run's own services, started the way production starts them: each bridge and position worker under its
 * `bun run workers` supervisor (workers/index.ts), which restarts a killed child. The run reads each supervisor's
 * output for its current child (pid, metrics port) and samples every process's memory.
 */
import { readFileSync } from "node:fs";
import { spawnWatched, type WatchedProcess } from "../../tools/watched-process.ts";

const ENTRY = new URL("../../workers/index.ts", import.meta.url).pathname;

export interface SupervisedService extends WatchedProcess {
  name: string;
  kind: "bridge" | "positions";
  /** The current child's pid (the latest `child started`). */
  childPid(): number | undefined;
  /** The current child's metrics port (the latest `"metricsPort":N` it printed). */
  metricsPort(): number | undefined;
  stop(): Promise<number>;
}

export function startSupervised(name: string, kind: "bridge" | "positions", env: Record<string, string>): SupervisedService {
  const watched = spawnWatched(name, [process.execPath, ENTRY, kind], { ...process.env, ...env });
  const last = (pattern: RegExp) => {
    const all = [...watched.output().matchAll(pattern)];
    return all.length ? Number(all.at(-1)![1]) : undefined;
  };
  return {
    ...watched,
    name,
    kind,
    childPid: () => last(/child started \{"child":"[a-z]+","pid":(\d+)\}/g),
    metricsPort: () => last(/"metricsPort":(\d+)/g),
    async stop() {
      if (watched.proc.exitCode === null) watched.proc.kill("SIGTERM");
      return watched.proc.exited;
    },
  };
}

/** Resident memory of a process in MB, or undefined once it is gone. */
export function rssMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** A Prometheus text metric summed over its series (e.g. the consumer lag over partitions); undefined if absent. */
export async function scrapeSum(port: number | undefined, metric: string): Promise<number | undefined> {
  if (port === undefined) return undefined;
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => undefined);
  if (text === undefined) return undefined;
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${metric} `) || line.startsWith(`${metric}{`)) sum = (sum ?? 0) + Number(line.split(" ").at(-1));
  }
  return sum;
}
