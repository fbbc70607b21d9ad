/**
 * Kafka's side of the broker-failure test and benchmark (test/workers/leader-failover.test.ts, bench/kafka-failover.ts),
 * run on Node (the Kafka client's addon does not run in Bun: see bin/stack). One mode per run, the login from the
 * environment (KAFKA_USERNAME/KAFKA_PASSWORD) and the brokers from KAFKA_BOOTSTRAP_SERVERS:
 *
 *   create-topics TOPIC:PARTITIONS...   as admin; replication factor 3 (the brokers' min.insync.replicas is 2)
 *   group-lag GROUP TOPIC               as admin; prints {"lag": n}: end offsets minus the group's committed offsets
 *   stream DRIVERS_JSON RATE LOG T0     a keyed stream of positions (below)
 *
 * stream: one position per message, driver after driver (record i is driver i mod n, its step i div n, dated T0 +
 * step seconds), at up to RATE messages/s, through the bridge's own forwarder (validation, the project's idempotent acks=all
 * producer): a record counts as acknowledged exactly when the bridge would acknowledge its MQTT message. Prints
 * {"sent","acked","failed"} every 50 ms; on SIGTERM stops sending, waits for every record's outcome, writes to LOG
 * every record's [index, sent at, acknowledged at or -1] (epoch ms) and prints {"done": true, ...}.
 */
import { writeFileSync, readFileSync } from "node:fs";
import { KafkaJS } from "@confluentinc/kafka-javascript";
import { config } from "../lib/config.ts";
import { createRecordProducer, kafkaSecurityConfig } from "../lib/kafka.ts";
import { createForwarder } from "../workers/forwarder.ts";
import { createMetrics } from "../workers/metrics.ts";

const REPLICATION_FACTOR = 3;
/**
 * Sends waiting for Kafka beyond this hold the generator back, as a bridge's bounded MQTT in-flight window would: a
 * stalled partition then slows the stream instead of piling up a backlog the busy test box needs minutes to clear.
 */
const MAX_OUTSTANDING = 5_000;
/** A generator that fell behind (a starved event loop) catches up by at most this many seconds' worth per tick. */
const MAX_BURST_SECONDS = 0.02;

function admin() {
  const kafka = new KafkaJS.Kafka({
    kafkaJS: { brokers: config().kafkaBootstrapServers.split(","), logLevel: KafkaJS.logLevel.ERROR },
    ...kafkaSecurityConfig(),
  });
  return kafka.admin();
}

async function createTopics(specs: string[]) {
  const client = admin();
  await client.connect();
  try {
    await client.createTopics({
      topics: specs.map((spec) => {
        const [topic, partitions] = spec.split(":");
        return { topic: topic!, numPartitions: Number(partitions), replicationFactor: REPLICATION_FACTOR };
      }),
    });
  } finally {
    await client.disconnect();
  }
  console.log(JSON.stringify({ created: specs }));
}

async function groupLag(groupId: string, topic: string) {
  const client = admin();
  await client.connect();
  try {
    // One after the other: the client's admin crashed (SIGSEGV) here with both requests in flight at once.
    const ends = await client.fetchTopicOffsets(topic);
    const [committed] = await client.fetchOffsets({ groupId, topics: [topic] });
    const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    // A partition without a committed offset (-1) is behind by all it holds.
    const lag = ends.reduce((sum, p) => sum + Number(p.high) - Math.max(0, at.get(p.partition) ?? 0), 0);
    console.log(JSON.stringify({ lag }));
  } finally {
    await client.disconnect();
  }
}

async function stream(driversFile: string, rate: number, logFile: string, t0: number) {
  const drivers = JSON.parse(readFileSync(driversFile, "utf8")) as string[];
  const cfg = config();
  const producer = createRecordProducer(cfg.kafkaBootstrapServers, "failover-stream");
  await producer.connect();
  const forward = createForwarder(producer, createMetrics("bridge"), { main: cfg.kafkaTopic, dlq: cfg.kafkaDlqTopic });
  const sentAt: number[] = [];
  const ackedAt: number[] = [];
  let acked = 0;
  let failed = 0;
  let firstError = "";
  let stopping = false;
  process.on("SIGTERM", () => (stopping = true));

  const send = (i: number) => {
    const d = i % drivers.length;
    const step = Math.floor(i / drivers.length);
    const payload = JSON.stringify({ lat: 40.7 + d * 0.0001, lon: -74.0 + step * 0.00001, tst: t0 + step, acc: 5, vel: 3 });
    sentAt[i] = Date.now();
    forward(`drivers/${drivers[d]}/location`, Buffer.from(payload)).then(
      () => {
        ackedAt[i] = Date.now();
        acked++;
      },
      (error: Error) => {
        ackedAt[i] = -1;
        failed++;
        firstError ||= error.message;
      },
    );
  };
  const progress = () => console.log(JSON.stringify({ sent: sentAt.length, acked, failed }));
  const reporter = setInterval(progress, 50);

  let credit = 0;
  let last = Date.now();
  while (!stopping) {
    const now = Date.now();
    credit = Math.min(credit + ((now - last) / 1000) * rate, Math.max(1, rate * MAX_BURST_SECONDS));
    last = now;
    for (; credit >= 1 && sentAt.length - acked - failed < MAX_OUTSTANDING; credit--) send(sentAt.length);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  while (acked + failed < sentAt.length) await new Promise((resolve) => setTimeout(resolve, 20));
  clearInterval(reporter);
  await producer.disconnect();
  writeFileSync(logFile, JSON.stringify(sentAt.map((at, i) => [i, at, ackedAt[i]])));
  console.log(JSON.stringify({ done: true, sent: sentAt.length, acked, failed, firstError }));
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === "create-topics") await createTopics(args);
  else if (mode === "group-lag") await groupLag(args[0]!, args[1]!);
  else if (mode === "stream") await stream(args[0]!, Number(args[1]), args[2]!, Number(args[3]));
  else throw new Error(`kafka-stream: unknown mode ${mode} (create-topics | group-lag | stream)`);
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
