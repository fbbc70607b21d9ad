// `bun run workers`: the real bridge and position worker, on Node, under the Bun supervisor (workers/index.ts).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { isolatedPipeline, type IsolatedPipeline } from "../../tools/pipeline.ts";
import { spawnWatched } from "../../tools/watched-process.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { waitFor } from "../api/support/wait.ts";

const ENTRY = new URL("../../workers/index.ts", import.meta.url).pathname;
let db: TestDatabase;
let pipeline: IsolatedPipeline;

beforeAll(async () => {
  db = await freshDatabase("workers_index");
  pipeline = await isolatedPipeline(`wix${process.pid}${Date.now() % 1e6}`, db.url, 1);
});
afterAll(async () => {
  await db?.drop();
});

function startWorkers(args: string[], env: Record<string, string>) {
  const workers = spawnWatched("workers", [process.execPath, ENTRY, ...args], { ...process.env, ...env });
  const childPids = () =>
    [...workers.output().matchAll(/child started \{"child":"[a-z]+","pid":(\d+)\}/g)].map((m) => Number(m[1]));
  return { ...workers, childPids };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("the bridge is restarted after it is killed, and SIGTERM stops it cleanly (exit 0)", async () => {
  const workers = startWorkers(["bridge"], pipeline.bridgeEnv);
  try {
    await waitFor("the bridge connected", () => workers.count("mqtt connected") >= 1, 60_000);
    const [first] = workers.childPids();
    process.kill(first!, "SIGKILL");
    await waitFor("a second bridge connected", () => workers.count("mqtt connected") >= 2, 60_000);
    expect(workers.output()).toContain("child exited, restarting");
    const second = workers.childPids()[1]!;
    expect(second).not.toBe(first);

    workers.proc.kill("SIGTERM");
    expect(await workers.proc.exited).toBe(0);
    expect(workers.output()).toContain("bridge info stopping");
    expect(alive(second)).toBe(false);
  } finally {
    workers.proc.kill("SIGKILL");
  }
}, 120_000);

test("the position worker joins its group under the supervisor and leaves on SIGINT (exit 0)", async () => {
  const workers = startWorkers(["positions"], pipeline.workerEnv);
  try {
    await waitFor("partitions assigned", () => workers.output().includes("partitions assign"), 60_000);
    const [pid] = workers.childPids();
    workers.proc.kill("SIGINT");
    expect(await workers.proc.exited).toBe(0);
    expect(workers.output()).toContain("positions info stopping");
    expect(alive(pid!)).toBe(false);
  } finally {
    workers.proc.kill("SIGKILL");
  }
}, 120_000);

test("a refused setting stops the service with 78 and no restart loop", async () => {
  const workers = startWorkers(["bridge"], { ...pipeline.bridgeEnv, H3_RESOLUTION: "banana" });
  expect(await workers.proc.exited).toBe(78);
  expect(workers.count("child started")).toBe(1);
  expect(workers.output()).toContain("H3_RESOLUTION");
});

test("an unknown service name is refused before anything starts (exit 2)", async () => {
  const workers = startWorkers(["bridge", "nope"], {});
  expect(await workers.proc.exited).toBe(2);
  expect(workers.output()).toContain('"unknown":["nope"]');
  expect(workers.count("child started")).toBe(0);
});
