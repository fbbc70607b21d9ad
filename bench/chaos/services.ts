/**
 * The chaos run's own services, started the way production starts them: each bridge and position worker under its
 * `bun run workers` supervisor (workers/index.ts), which restarts a killed child. The run reads each supervisor's
 * output for its current child (pid, metrics port) and samples every process's memory.
 */
import { readFileSync } from "node:fs";
import type { Subprocess } from "bun";

const ENTRY = new URL("../../workers/index.ts", import.meta.url).pathname;

export interface SupervisedService {
  name: string;
  kind: "bridge" | "positions";
  proc: Subprocess<"ignore", "pipe", "pipe">;
  output(): string;
  /** The current child's pid (the latest `child started`). */
  childPid(): number | undefined;
  /** The current child's metrics port (the latest `"metricsPort":N` it printed). */
  metricsPort(): number | undefined;
  /** Resolves once `text` has been printed `times` times in all. */
  waitFor(text: string, times?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<number>;
}

export function startSupervised(name: string, kind: "bridge" | "positions", env: Record<string, string>): SupervisedService {
  let output = "";
  const proc = Bun.spawn([process.execPath, ENTRY, kind], {
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk);
  };
  void collect(proc.stdout);
  void collect(proc.stderr);
  const last = (pattern: RegExp) => {
    const all = [...output.matchAll(pattern)];
    return all.length ? Number(all.at(-1)![1]) : undefined;
  };
  return {
    name,
    kind,
    proc,
    output: () => output,
    childPid: () => last(/child started \{"child":"[a-z]+","pid":(\d+)\}/g),
    metricsPort: () => last(/"metricsPort":(\d+)/g),
    async waitFor(text, times = 1, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      while (output.split(text).length - 1 < times) {
        if (proc.exitCode !== null) throw new Error(`${name} exited (${proc.exitCode}):\n${output.slice(-2_000)}`);
        if (Date.now() > deadline) throw new Error(`${name}: "${text}" x${times} not seen in ${timeoutMs} ms:\n${output.slice(-2_000)}`);
        await Bun.sleep(50);
      }
    },
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return proc.exited;
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
