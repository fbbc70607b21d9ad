/**
 * Real Kafka for API tests: a topic of the test file's own (so other tests and the demo never interfere), the
 * production path to it (the Node sidecar), and kcat to read it back — the Kafka client library cannot run in Bun.
 */
import { readdirSync } from "node:fs";
import { type KafkaSidecar, startKafkaSidecar } from "../../../api/kafka/sidecar-client.ts";
import { config } from "../../../lib/config.ts";
import { createTopic, readTopic } from "../../support/kafka-cli.ts";

export { readTopic };

export interface TestTopic {
  topic: string;
  kafka: KafkaSidecar;
  drop(): Promise<void>;
}

async function deleteTopic(topic: string): Promise<void> {
  const kafkaDir = new URL("../../../.stack/kafka/", import.meta.url).pathname;
  const libs = readdirSync(kafkaDir).find((d) => d.startsWith("libs-"));
  if (!libs) return;
  const proc = Bun.spawn(
    ["java", "-cp", `${kafkaDir}${libs}/*`, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
      config().kafkaBootstrapServers, "--delete", "--if-exists", "--topic", topic],
    { stdout: "ignore", stderr: "ignore" },
  );
  await proc.exited;
}

export async function createTestTopic(label: string): Promise<TestTopic> {
  const topic = `test-${label}-${process.pid}-${Date.now() % 1e6}`.replaceAll("_", "-");
  await createTopic(topic, 1);
  const kafka = startKafkaSidecar({ clientId: `api-test-${label}` });
  await kafka.ready(30_000);
  return {
    topic,
    kafka,
    async drop() {
      await kafka.close();
      await deleteTopic(topic);
    },
  };
}
