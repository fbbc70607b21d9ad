/**
 * Starts the Kafka-facing workers as real Node processes, bundled fresh from the TypeScript so a test or benchmark
 * always runs the code in the tree (bin/stack starts them through `bun run workers`, which does the same).
 */
import { bundleForNode } from "../lib/node-bundle.ts";
import { spawnWatched, type WatchedProcess } from "./watched-process.ts";

const WORKERS = { bridge: "../workers/bridge.ts", positions: "../workers/positions.ts" } as const;
const bundles = new Map<string, Promise<string>>();

/** One bundle per entry and process: every test of a run starts the same code. */
function bundled(entry: string): Promise<string> {
  let path = bundles.get(entry);
  if (!path) bundles.set(entry, (path = bundleForNode(entry, "tools")));
  return path;
}

/** A Node worker process and what it printed (tools/watched-process.ts). */
export type WorkerProcess = WatchedProcess;

export function startNodeWorker(name: keyof typeof WORKERS, env: Record<string, string>): Promise<WorkerProcess> {
  return startNodeScript(new URL(WORKERS[name], import.meta.url).pathname, env);
}

/**
 * Any TypeScript entry point, bundled for Node and run there (the Kafka client's side of a test). With
 * NODE_CPU_PROFILE_DIR set, each such process writes a V8 CPU profile there when it exits normally (SIGTERM, not
 * SIGKILL); `bun tools/cpu-profile-summary.ts FILE` reads one.
 */
export async function startNodeScript(entry: string, env: Record<string, string>): Promise<WorkerProcess> {
  const bundle = await bundled(entry);
  const profileDir = process.env.NODE_CPU_PROFILE_DIR;
  const profiling = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  return spawnWatched(entry.split("/").at(-1)!, ["node", ...profiling, bundle], { ...process.env, ...env });
}

/** Polls `probe` until it returns true (a readiness check, not a guess at how long something takes). */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}
