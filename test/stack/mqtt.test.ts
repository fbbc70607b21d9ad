// Proof that mqtt.js talks to the real Mosquitto: a shared-subscription subscriber receives QoS 1 messages.
import { afterAll, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../../lib/config.ts";

const clients: MqttClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync()));
});

test("two shared-subscription members split QoS 1 messages between them and lose none", async () => {
  const topic = `test/shared/${Date.now()}`;
  const received: string[][] = [[], []];
  for (const index of [0, 1]) {
    const sub = await mqtt.connectAsync(config().mqttUrl, { clientId: `test-sub-${index}-${Date.now()}` });
    clients.push(sub);
    sub.on("message", (_topic, payload, packet) => {
      expect(packet.qos).toBe(1);
      received[index]!.push(payload.toString());
    });
    await sub.subscribeAsync(`$share/test/${topic}`, { qos: 1 });
  }
  const pub = await mqtt.connectAsync(config().mqttUrl, { clientId: `test-pub-${Date.now()}` });
  clients.push(pub);
  const N = 200;
  await Promise.all(Array.from({ length: N }, (_, i) => pub.publishAsync(topic, `m${i}`, { qos: 1 })));

  const deadline = Date.now() + 10_000;
  while (received[0]!.length + received[1]!.length < N && Date.now() < deadline) await Bun.sleep(20);
  const all = [...received[0]!, ...received[1]!].sort();
  expect(all).toEqual(Array.from({ length: N }, (_, i) => `m${i}`).sort());
  expect(received[0]!.length).toBeGreaterThan(0);
  expect(received[1]!.length).toBeGreaterThan(0);
});
