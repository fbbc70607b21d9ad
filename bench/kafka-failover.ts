/**
 * A Kafka partition leader killed mid-stream, measured: runs test/workers/leader-failover.test.ts `--runs` times (each
 * on a freshly formatted 3-node cluster of its own, bin/stack kafka-cluster), and writes each run's figures and their
 * min / median / max to bench/results/kafka-failover-<time>.json:
 *
 *   clusterStartMs        bin/stack kafka-cluster up on empty directories until every node serves, users/ACLs/topics in
 *   leaderMovedMs         SIGKILL of the busiest partition's leader until every partition has a live leader
 *   producerRecoveryMs    SIGKILL until the last record sent before it is acknowledged (acks=all, idempotent)
 *   endToEndRecoveryMs    SIGKILL until every position sent before it is in the trail (the worker caught up)
 *   restartMs / rejoinMs  the killed node's restart (bin/stack kafka-cluster up), then until it is back in every ISR
 *   lagZeroAfterStreamMs  the stream's end until the group's committed offsets reach every partition's end
 *
 * The load average is recorded too: on a busy 2-core box, JVM start-up dominates the start and restart figures.
 *
 *   bun bench/kafka-failover.ts [--runs 3]
 */
import { cpus, loadavg, totalmem } from "node:os";
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const RUNS = Number(args.runs);
const TEST = "test/workers/leader-failover.test.ts";

const runs: Record<string, number>[] = [];
for (let i = 0; i < RUNS; i++) {
  const resultFile = `/tmp/kafka-failover-${process.pid}-${i}.json`;
  const loadBefore = loadavg()[0]!;
  const proc = Bun.spawn(["bun", "test", "--timeout", "900000", TEST], {
    env: { ...process.env, KAFKA_FAILOVER_RESULT: resultFile },
    stdout: "inherit",
    stderr: "inherit",
  });
  if ((await proc.exited) !== 0) throw new Error(`run ${i + 1}: ${TEST} failed`);
  const figures = (await Bun.file(resultFile).json()) as Record<string, number>;
  rmSync(resultFile, { force: true });
  runs.push({ ...figures, loadAverage1m: Math.round(((loadBefore + loadavg()[0]!) / 2) * 10) / 10 });
  console.log(`run ${i + 1}/${RUNS}: ${JSON.stringify(runs.at(-1))}`);
}

const summary: Record<string, { min: number; median: number; max: number }> = {};
for (const key of Object.keys(runs[0] ?? {})) {
  const values = runs.map((r) => r[key]!).sort((a, b) => a - b);
  summary[key] = { min: values[0]!, median: values[Math.floor(values.length / 2)]!, max: values.at(-1)! };
}
const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const result = {
  benchmark: "kafka-failover",
  parameters: { runs: RUNS, brokers: 3, replicationFactor: 3, minInsyncReplicas: 2, partitions: 8, drivers: 200, rateLimit: 1_000 },
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGb: Math.round(totalmem() / 2 ** 30) },
  commit,
  runs,
  summary,
};
const file = `bench/results/kafka-failover-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
await Bun.write(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(summary, null, 2));
console.log(`written to ${file}`);
