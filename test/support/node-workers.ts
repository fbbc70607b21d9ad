/**
 * Starts the Kafka-facing workers as real Node processes (as bin/stack does), bundled fresh from the TypeScript so
 * a test always runs the code in the tree.
 */
import { mkdirSync } from "node:fs";
import type { Subprocess } from "bun";

const OUT = new URL("../../.stack/node-test/", import.meta.url).pathname;
let built: Promise<void> | undefined;

async function buildBundles() {
  mkdirSync(OUT, { recursive: true });
  const root = new URL("../../workers/", import.meta.url).pathname;
  const result = await Bun.build({
    entrypoints: [`${root}bridge.ts`, `${root}positions.ts`, new URL("../stack/kafka-roundtrip.node.ts", import.meta.url).pathname],
    target: "node",
    outdir: OUT,
    root: new URL("../../", import.meta.url).pathname,
    external: ["@confluentinc/kafka-javascript"],
  });
  if (!result.success) throw new Error(`bundling workers failed: ${result.logs.join("\n")}`);
}

export interface WorkerProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  output(): string;
  /** Resolves when a line containing `text` has been printed. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

export async function startNodeWorker(
  name: "bridge" | "positions" | "kafka-roundtrip.node",
  env: Record<string, string>,
): Promise<WorkerProcess> {
  built ??= buildBundles();
  await built;
  let output = "";
  const bundle = name === "kafka-roundtrip.node" ? `${OUT}test/stack/${name}.js` : `${OUT}workers/${name}.js`;
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
