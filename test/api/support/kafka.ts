/**
 * Real Kafka for API tests: a topic of the test file's own (so other tests and the demo never interfere), the
 * production path to it (the Node sidecar), and kcat to read it back — the Kafka client library cannot run in Bun.
 */
import { type KafkaSidecar, startKafkaSidecar } from "../../../api/kafka/sidecar-client.ts";
// Logged in as the tests' Kafka identity (the broker refuses anonymous clients): see tools/kafka-cli.ts.
import { createTopic, deleteTopic, readTopic } from "../../../tools/kafka-cli.ts";

export { readTopic };

export interface TestTopic {
  topic: string;
  kafka: KafkaSidecar;
  drop(): Promise<void>;
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
      await deleteTopic(topic).catch(() => {});
    },
  };
}
