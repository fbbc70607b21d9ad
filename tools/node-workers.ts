/**
 * Starts the Kafka-facing workers as real Node processes, bundled fresh from the TypeScript so a test or benchmark
 * always runs the code in the tree (bin/stack starts them through `bun run workers`, which does the same).
 */
import type { Subprocess } from "bun";
import { bundleForNode } from "../lib/node-bundle.ts";

const WORKERS = { bridge: "../workers/bridge.ts", positions: "../workers/positions.ts" } as const;
const bundles = new Map<string, Promise<string>>();

/** One bundle per entry and process: every test of a run starts the same code. */
function bundled(entry: string): Promise<string> {
  let path = bundles.get(entry);
  if (!path) bundles.set(entry, (path = bundleForNode(entry, "tools")));
  return path;
}

export interface WorkerProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  output(): string;
  /** Resolves when a line containing `text` has been printed. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

export function startNodeWorker(name: keyof typeof WORKERS, env: Record<string, string>): Promise<WorkerProcess> {
  return startNodeScript(new URL(WORKERS[name], import.meta.url).pathname, env);
}

/** Any TypeScript entry point, bundled for Node and run there (the Kafka client's side of a test). */
export async function startNodeScript(entry: string, env: Record<string, string>): Promise<WorkerProcess> {
  const name = entry.split("/").at(-1)!;
  const bundle = await bundled(entry);
  let output = "";
  const proc = Bun.spawn(["node", bundle], {
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
  return {
    proc,
    output: () => output,
    async waitFor(text, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!output.includes(text)) {
        if (proc.exitCode !== null) throw new Error(`${name} exited (${proc.exitCode}):\n${output}`);
        if (Date.now() > deadline) throw new Error(`${name}: no "${text}" after ${timeoutMs} ms:\n${output}`);
        await Bun.sleep(25);
      }
    },
  };
}

/** Polls `probe` until it returns true (a readiness check, not a guess at how long something takes). */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}
