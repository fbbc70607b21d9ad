import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sidecarEnvironment, startKafkaSidecar } from "../../../api/kafka/sidecar-client.ts";
import { createTestTopic, readTopic, type TestTopic } from "../support/kafka.ts";
import { waitFor } from "../support/wait.ts";

let kafka: TestTopic;
beforeAll(async () => {
  kafka = await createTestTopic("api_sidecar");
}, 60_000);
afterAll(() => kafka.drop(), 60_000);

describe("Kafka sidecar", () => {
  test("sends keyed records the broker acknowledged, and probes the broker", async () => {
    const link = kafka.kafka;
    expect(link.state).toBe("ready");
    await link.send(kafka.topic, [
      { key: "driver-a", value: '{"n":1}' },
      { key: "driver-b", value: '{"n":2}' },
    ]);
    await link.send(kafka.topic, [{ key: "driver-a", value: '{"n":3}' }]);
    const records = await readTopic(kafka.topic);
    expect(records.map((r) => [r.key, r.value])).toEqual([
      ["driver-a", '{"n":1}'],
      ["driver-b", '{"n":2}'],
      ["driver-a", '{"n":3}'],
    ]);
    await link.probe(kafka.topic, 2_000);
  });

  test("a sidecar that dies fails fast, comes back by itself, and works again", async () => {
    const link = startKafkaSidecar({ clientId: "api-test-restart" });
    try {
      await link.ready(30_000);
      const firstPid = link.pid!;
      process.kill(firstPid, "SIGKILL");
      await waitFor("the sidecar to be seen down", () => link.state !== "ready", 5_000);
      await expect(link.send(kafka.topic, [{ key: "k", value: "lost?" }])).rejects.toThrow("not connected");
      await link.ready(30_000);
      expect(link.pid).not.toBe(firstPid);
      await link.send(kafka.topic, [{ key: "after-restart", value: "ok" }]);
      expect((await readTopic(kafka.topic)).at(-1)).toMatchObject({ key: "after-restart", value: "ok" });
    } finally {
      await link.close();
    }
    expect(link.state).toBe("closed");
    await expect(link.send(kafka.topic, [{ key: "k", value: "v" }])).rejects.toThrow("not connected");
  }, 60_000);

  test("with the broker unreachable: not ready, sends refused at once, and it still stops promptly", async () => {
    const link = startKafkaSidecar({ clientId: "api-test-unreachable", env: { KAFKA_BOOTSTRAP_SERVERS: "127.0.0.1:1" } });
    await expect(link.ready(1_000)).rejects.toThrow("not connected");
    const started = Date.now();
    await expect(link.send("any", [{ key: "k", value: "v" }])).rejects.toThrow("not connected");
    await expect(link.probe("any", 500)).rejects.toThrow("not connected");
    await link.close();
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 20_000);
});

test("the sidecar sees the Kafka login and the runtime's basics, never the API's other secrets", () => {
  const env = sidecarEnvironment({
    PATH: "/bin", HOME: "/root", KAFKA_USERNAME: "api", KAFKA_PASSWORD: "k", AUTH_TOKEN_SECRET: "t",
    MQTT_ADMIN_PASSWORD: "m", DATABASE_URL: "postgresql://tracking_api:p@h/db", UNSET: undefined,
  });
  expect(env).toEqual({ PATH: "/bin", HOME: "/root", KAFKA_USERNAME: "api", KAFKA_PASSWORD: "k" });
});
