// The bridge says when it cannot make progress: a bridge whose Kafka refuses its records (here: a topic its principal
// may not write) keeps every message unacknowledged for redelivery, and once one has waited longer than
// BRIDGE_STALLED_AFTER_MS with nothing forwarded, /ready answers 503 and the log says why.
import { afterAll, beforeAll, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../../lib/config.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { kafkaIdentity, mqttTester } from "../../tools/pipeline.ts";

const run = `br${process.pid}${Date.now() % 1e6}`;
const PREFIX = `test/${run}/`;
let bridge: WorkerProcess;
let publisher: MqttClient;

const readyStatus = async () => {
  const port = Number(/"metricsPort":(\d+)/.exec(bridge.output())![1]);
  return (await fetch(`http://127.0.0.1:${port}/ready`)).status;
};

beforeAll(async () => {
  bridge = await startNodeWorker("bridge", {
    ...mqttTester(),
    ...kafkaIdentity("test-bridge", "KAFKA_TEST_BRIDGE_PASSWORD"),
    // test-bridge may write test-pos-* and bench-pos-* only (infra/kafka/acls.conf): Kafka refuses this topic.
    KAFKA_TOPIC: `forbidden-${run}`,
    KAFKA_DLQ_TOPIC: `test-dlq-${run}`,
    MQTT_TOPIC_PREFIX: PREFIX,
    BRIDGE_SHARE_GROUP: run,
    BRIDGE_CLIENT_ID: run,
    BRIDGE_STALLED_AFTER_MS: "500",
    METRICS_PORT: "0",
  });
  await bridge.waitFor("mqtt connected");
  publisher = await mqtt.connectAsync(config().mqttUrl, { clientId: `pub-${run}` });
});

afterAll(async () => {
  await publisher?.endAsync();
  bridge?.proc.kill("SIGTERM");
  await bridge?.proc.exited;
});

test("an idle bridge is ready; one whose messages cannot reach Kafka is not, and logs it", async () => {
  await eventually(async () => (await readyStatus()) === 200, 30_000, "the idle bridge to be ready");
  await publisher.publishAsync(
    `${PREFIX}drivers/00000000-0000-4000-8000-000000000001/location`,
    JSON.stringify({ lat: 40.7, lon: -74, tst: Math.floor(Date.now() / 1000) }),
    { qos: 1 },
  );
  await eventually(async () => (await readyStatus()) === 503, 60_000, "/ready to answer 503 for the stalled bridge");
  await bridge.waitFor("not ready: messages are waiting and none was forwarded", 30_000);
  expect(bridge.proc.exitCode).toBeNull(); // stalled, still running: the message is kept for redelivery
});
