/**
 * Runs on Node (spawned by kafka-client.test.ts): lib/kafka.ts's hot-path producer, logged in as whoever the
 * environment names (KAFKA_USERNAME/KAFKA_PASSWORD, none = plaintext), tries each topic given in argv and prints one
 * JSON line: whether it connected, and per topic "ok" or the delivery error.
 */
import { config } from "../../lib/config.ts";
import { createRecordProducer } from "../../lib/kafka.ts";

async function main() {
  const topics = process.argv.slice(2);
  const producer = createRecordProducer(config().kafkaBootstrapServers, "security-test");
  // A refused login never connects: librdkafka retries until lib/kafka.ts's 30 s connect timeout. 8 s tells enough.
  const connected = await Promise.race([
    producer.connect().then(() => true, () => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 8_000)),
  ]);
  const sends: Record<string, string> = {};
  if (connected) {
    for (const topic of topics) {
      sends[topic] = await producer.send({ topic, key: "security-test", value: "not a position" }).then(
        () => "ok",
        (error: Error) => error.message,
      );
    }
  }
  console.log(JSON.stringify({ user: config().kafkaSasl?.username ?? null, connected, sends }));
  // librdkafka's threads would keep retrying a refused broker; the answer is printed, so leave at once.
  process.kill(process.pid, "SIGKILL");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
