/**
 * Runs on Node (spawned by kafka.test.ts): produces 10,000 keyed messages with @confluentinc/kafka-javascript, reads
 * them back with the batch consumer in a fresh consumer group, and prints one JSON line with what it saw.
 */
import { config } from "../../lib/config.ts";
import { createBatchConsumer, createProducer, ensureTopics } from "../../lib/kafka.ts";

const KEYS = 50;
const TOTAL = 10_000;

async function main() {
  const topic = `test-roundtrip-${Date.now()}`;
  await ensureTopics(config().kafkaBootstrapServers, [{ topic, partitions: 4 }]);
  const producer = createProducer(config().kafkaBootstrapServers, "test-roundtrip");
  await producer.connect();
  for (let i = 0; i < TOTAL; i += 1_000) {
    await producer.send({
      topic,
      messages: Array.from({ length: 1_000 }, (_, j) => ({
        key: `driver-${(i + j) % KEYS}`,
        value: JSON.stringify({ key: (i + j) % KEYS, seq: Math.floor((i + j) / KEYS) }),
      })),
    });
  }
  await producer.disconnect();

  const consumer = await createBatchConsumer({
    bootstrapServers: config().kafkaBootstrapServers,
    groupId: `test-roundtrip-${Date.now()}`,
    topics: [topic],
    clientId: "test-roundtrip",
  });
  const lastSeq = new Map<number, number>();
  const batchSizes: number[] = [];
  let received = 0;
  let outOfOrder = 0;
  let keyMismatch = 0;
  const deadline = Date.now() + 45_000;
  while (received < TOTAL && Date.now() < deadline) {
    const batch = await consumer.nextBatch(5_000, 200);
    if (batch.length === 0) continue;
    batchSizes.push(batch.length);
    for (const m of batch) {
      const { key, seq } = JSON.parse(m.value!.toString()) as { key: number; seq: number };
      if (m.key?.toString() !== `driver-${key}`) keyMismatch++;
      if (seq !== (lastSeq.get(key) ?? -1) + 1) outOfOrder++;
      lastSeq.set(key, seq);
      received++;
    }
    consumer.commitBatch(batch);
  }
  const lag = [...(await consumer.lag()).values()].reduce((a, b) => a + b, 0);
  await consumer.disconnect();
  console.log(JSON.stringify({ received, keys: lastSeq.size, outOfOrder, keyMismatch, batchSizes, lag }));
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
