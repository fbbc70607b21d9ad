/**
 * A 3-node Kafka cluster of a test's or benchmark's own, beside the dev stack's broker: started and stopped by
 * `bin/stack kafka-cluster` (the code, configuration, users and ACLs of `bin/stack up --kafka-brokers 3`) in its own
 * directory and on its own ports; and what a test needs to watch and break in it: partition leaders and in-sync
 * replicas, end offsets, a node's process.
 */
import { readFileSync } from "node:fs";
import { kcat } from "./kafka-cli.ts";

const STACK_SCRIPT = new URL("../bin/stack", import.meta.url).pathname;

export interface PartitionState {
  partition: number;
  /** -1 while the partition has no leader. */
  leader: number;
  replicas: number[];
  isr: number[];
}

export interface KafkaCluster {
  dir: string;
  bootstrap: string;
  /** Starts every node not running (and formats, adds users, ACLs, topics on first start); resolves when all serve. */
  up(): Promise<void>;
  down(): Promise<void>;
  /** The process id of node n (its pid file). */
  nodePid(node: number): number;
  partitions(topic: string): Promise<PartitionState[]>;
  /** Each partition's end offset (the next offset to be written). */
  endOffsets(topic: string, partitions: number): Promise<number[]>;
}

export function kafkaCluster(dir: string, basePort: number, nodes = 3): KafkaCluster {
  const bootstrap = Array.from({ length: nodes }, (_, i) => `127.0.0.1:${basePort + 2 * i}`).join(",");
  const stack = async (action: string) => {
    const proc = Bun.spawn(
      ["bash", STACK_SCRIPT, "kafka-cluster", action, "--dir", dir, "--base-port", String(basePort), "--brokers", String(nodes)],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`bin/stack kafka-cluster ${action} failed (${code}):\n${stdout}${stderr}`);
  };
  const metadata = async (args: string[]) => {
    const { code, stdout, stderr } = await kcat(args, { bootstrap, timeoutMs: 30_000 });
    if (code !== 0) throw new Error(`kcat ${args.join(" ")} failed (${code}): ${stderr}`);
    return stdout;
  };
  return {
    dir,
    bootstrap,
    up: () => stack("up"),
    down: () => stack("down"),
    nodePid: (node) => Number(readFileSync(`${dir}/kafka-${node}.pid`, "utf8").trim()),
    async partitions(topic) {
      const out = await metadata(["-L", "-t", topic, "-m", "5"]);
      const list = (text: string) => (text ? text.split(",").map(Number) : []);
      return [...out.matchAll(/partition (\d+), leader (-?\d+), replicas: ([\d,]*), isrs: ([\d,]*)/g)].map((m) => ({
        partition: Number(m[1]),
        leader: Number(m[2]),
        replicas: list(m[3]!),
        isr: list(m[4]!),
      }));
    },
    async endOffsets(topic, partitions) {
      const out = await metadata(["-Q", ...Array.from({ length: partitions }, (_, p) => ["-t", `${topic}:${p}:-1`]).flat()]);
      const offsets = Array<number>(partitions).fill(0);
      for (const m of out.matchAll(/\[(\d+)\] offset (\d+)/g)) offsets[Number(m[1])] = Number(m[2]);
      return offsets;
    },
  };
}
