/**
 * The faults a chaos run injects. Each one is what happens on a bad day, done for real: processes SIGKILLed (their
 * supervisor restarts them), infrastructure restarted through bin/stack, the database cut off by a TCP proxy.
 */
import { kcat } from "../../tools/kafka-cli.ts";
import type { TcpProxy } from "../../tools/tcp-proxy.ts";
import type { SupervisedService } from "./services.ts";

export type FaultName =
  | "worker-sigkill"
  | "bridge-sigkill"
  | "kafka-restart"
  | "postgres-immediate-restart"
  | "mosquitto-restart"
  | "postgres-cut";

export const FAULT_NAMES: readonly FaultName[] = [
  "worker-sigkill",
  "bridge-sigkill",
  "kafka-restart",
  "postgres-immediate-restart",
  "mosquitto-restart",
  "postgres-cut",
];

export interface FaultContext {
  workers: SupervisedService[];
  bridges: SupervisedService[];
  /** The workers' way to PostgreSQL. */
  databaseProxy: TcpProxy;
  /** The run's positions topic: the Kafka fault restarts the leader of most of its partitions. */
  topic: string;
  cutSeconds: number;
  log(line: string): void;
}

const ROOT = new URL("../../", import.meta.url).pathname;

async function stack(...args: string[]): Promise<void> {
  const proc = Bun.spawn(["bash", "bin/stack", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`bin/stack ${args.join(" ")} failed (${code}):\n${out}${err}`);
}

/** SIGKILLs the current child of one of `services` (taking turns), then waits until its supervisor started another. */
async function killChild(services: SupervisedService[], turn: number, ready: string): Promise<string> {
  const service = services[turn % services.length]!;
  const pid = service.childPid();
  if (pid === undefined) throw new Error(`${service.name} has no child to kill`);
  const starts = service.count("child started");
  const readies = service.count(ready);
  process.kill(pid, "SIGKILL");
  await service.waitFor("child started", 120_000, starts + 1);
  await service.waitFor(ready, 120_000, readies + 1);
  return `${service.name} pid ${pid}`;
}

/** The broker leading most of `topic`'s partitions (kcat's metadata), and how many brokers there are. */
async function busiestLeader(topic: string): Promise<{ brokers: number; leader: number }> {
  const { code, stdout, stderr } = await kcat(["-L", "-t", topic]);
  if (code !== 0) throw new Error(`reading ${topic}'s metadata failed: ${stderr}`);
  const brokers = Number(/(\d+) brokers:/.exec(stdout)?.[1] ?? 1);
  const led = new Map<number, number>();
  for (const m of stdout.matchAll(/partition \d+, leader (\d+)/g)) led.set(Number(m[1]), (led.get(Number(m[1])) ?? 0) + 1);
  const leader = [...led.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 1;
  return { brokers, leader };
}

/** Injects one fault and returns once the fault itself is over (not the recovery): what was hit. */
export async function injectFault(name: FaultName, turn: number, ctx: FaultContext): Promise<string> {
  switch (name) {
    case "worker-sigkill":
      return killChild(ctx.workers, turn, "partitions assign");
    case "bridge-sigkill":
      return killChild(ctx.bridges, turn, "mqtt connected");
    case "kafka-restart": {
      const { brokers, leader } = await busiestLeader(ctx.topic);
      // One broker: it is the leader of everything, and restarting it is the outage. In a cluster: that node only.
      if (brokers === 1) await stack("restart", "kafka");
      else await stack("restart", "kafka", String(leader));
      return `node ${leader} of ${brokers}`;
    }
    case "postgres-immediate-restart":
      await stack("restart", "postgres", "--immediate");
      return "the cluster";
    case "mosquitto-restart":
      await stack("restart", "mosquitto");
      return "the broker";
    case "postgres-cut":
      ctx.databaseProxy.cut();
      await Bun.sleep(ctx.cutSeconds * 1000);
      ctx.databaseProxy.restore();
      return `${ctx.cutSeconds} s`;
  }
}
