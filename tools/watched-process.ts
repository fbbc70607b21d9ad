/**
 * A child process whose output (stdout and stderr) is kept, for tests and benchmarks that wait on what it prints
 * (a readiness line) rather than on time.
 */
import type { Subprocess } from "bun";

export interface WatchedProcess {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  output(): string;
  /** How many times `text` has been printed so far. */
  count(text: string): number;
  /** Resolves once `text` has been printed `times` times in all; rejects if the process exits first or on timeout. */
  waitFor(text: string, timeoutMs?: number, times?: number): Promise<void>;
}

export function spawnWatched(name: string, command: string[], env: Record<string, string | undefined>): WatchedProcess {
  let output = "";
  const proc = Bun.spawn(command, { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) output += decoder.decode(chunk);
  };
  void collect(proc.stdout);
  void collect(proc.stderr);
  const count = (text: string) => output.split(text).length - 1;
  return {
    proc,
    output: () => output,
    count,
    async waitFor(text, timeoutMs = 30_000, times = 1) {
      const deadline = Date.now() + timeoutMs;
      while (count(text) < times) {
        if (proc.exitCode !== null) throw new Error(`${name} exited (${proc.exitCode}):\n${output.slice(-4_000)}`);
        if (Date.now() > deadline) throw new Error(`${name}: "${text}" x${times} not seen in ${timeoutMs} ms:\n${output.slice(-4_000)}`);
        await Bun.sleep(25);
      }
    },
  };
}
