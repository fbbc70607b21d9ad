// Mosquitto's durability with the project's own config (infra/mosquitto/mosquitto.conf, rendered as bin/stack does,
// with the stack's password file and plugin) on a broker of its own (tools/mosquitto-instance.ts), so restarting it
// disturbs nobody: a graceful restart loses no queued QoS 1 message of a disconnected persistent session, and a
// message dropped on a full queue is logged by the broker and reaches the bridge's metric and log.
import { afterAll, afterEach, expect, test } from "bun:test";
import mqtt from "mqtt";
import { mosquittoInstance, type MosquittoInstance } from "../../tools/mosquitto-instance.ts";
import { BROKER_STATS_TOPICS, brokerStatsHandler, createMetrics } from "../../workers/metrics.ts";
import { startSubscriber, type Subscriber } from "../../workers/mqtt-subscriber.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const PORT = 18_900 + (process.pid % 90);
const loadgenPassword = new URL(process.env.MQTT_LOADGEN_URL!).password;
const testerPassword = new URL(process.env.MQTT_URL!).password;
const url = (user: string, password: string) => `mqtt://${user}:${password}@127.0.0.1:${PORT}`;

let broker: MosquittoInstance | undefined;
const subscribers: Subscriber[] = [];
afterEach(async () => {
  await Promise.all(subscribers.splice(0).map((s) => s.close()));
  await broker?.remove();
  broker = undefined;
});
afterAll(async () => broker?.remove());

async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** The bridge's own MQTT client (persistent session, $share group, acknowledges after the handler), as tester. */
function bridgeLike(run: string, onMessage: (payload: string) => void, extra: Partial<Parameters<typeof startSubscriber>[0]> = {}) {
  const subscriber = startSubscriber({
    url: url("tester", testerPassword),
    clientId: `durable-${run}`,
    topics: [`$share/durable-${run}/test/${run}/#`],
    onMessage: async (_topic, payload) => onMessage(payload.toString()),
    ...extra,
  });
  subscribers.push(subscriber);
  return subscriber;
}

async function closeSubscriber(subscriber: Subscriber) {
  subscribers.splice(subscribers.indexOf(subscriber), 1);
  await subscriber.close();
}

async function publishAll(run: string, n: number) {
  const publisher = await mqtt.connectAsync(url("loadgen", loadgenPassword), { clientId: `durable-pub-${run}`, reconnectPeriod: 0 });
  try {
    // Every publish resolves on its PUBACK: the broker has taken responsibility for each message.
    await Promise.all(Array.from({ length: n }, (_, i) => publisher.publishAsync(`test/${run}/drivers/d/location`, `m${i}`, { qos: 1 })));
  } finally {
    await publisher.endAsync();
  }
}

test("the project's config is what runs: persistence on, queue limits from the outage budget", () => {
  broker = mosquittoInstance({ port: PORT, dir: `${ROOT}.stack/test-mosquitto-durability-${process.pid}` });
  const rendered = Bun.file(`${broker.dir}/mosquitto.conf`);
  return rendered.text().then((text) => {
    expect(text).toContain(`listener ${PORT} 127.0.0.1`);
    expect(text).toMatch(/^persistence true$/m);
    expect(text).toMatch(/^autosave_interval 30$/m);
    expect(text).toMatch(/^max_queued_messages 1500000$/m);
    expect(text).toMatch(/^log_type notice$/m);
  });
});

test("a graceful restart (SIGTERM, as bin/stack stops it) keeps every QoS 1 message queued for a persistent session", async () => {
  const run = `restart${Date.now().toString(36)}`;
  broker = mosquittoInstance({ port: PORT, dir: `${ROOT}.stack/test-mosquitto-durability-${process.pid}` });
  await broker.start();
  // The bridge subscribes, then goes away: its session stays, and the broker queues its share of messages.
  const first = bridgeLike(run, () => {});
  await eventually(() => first.subscribed(), 10_000, "the subscription");
  await closeSubscriber(first);
  const N = 5_000;
  await publishAll(run, N);

  await broker.stop("SIGTERM");
  await broker.start();

  const received = new Set<string>();
  const again = bridgeLike(run, (payload) => void received.add(payload));
  await eventually(() => received.size === N, 30_000, `${N} messages after the restart (have ${received.size})`);
  expect([...received].sort()).toEqual(Array.from({ length: N }, (_, i) => `m${i}`).sort());
  expect(again.subscribed()).toBe(true);
}, 90_000);

test("a full queue: the broker logs the drop, and the bridge's gauge and log line count it", async () => {
  const run = `drop${Date.now().toString(36)}`;
  // The project's config, with a queue small enough to fill in a test and $SYS published every second.
  broker = mosquittoInstance({
    port: PORT,
    dir: `${ROOT}.stack/test-mosquitto-durability-${process.pid}`,
    settings: { max_queued_messages: 10, sys_interval: 1 },
  });
  await broker.start();
  const away = bridgeLike(run, () => {});
  await eventually(() => away.subscribed(), 10_000, "the subscription");
  await closeSubscriber(away);

  // The bridge's metrics side: the broker's $SYS counters through the same handler workers/bridge.ts wires.
  const metrics = createMetrics("test");
  const dropLog: string[] = [];
  const stats = bridgeLike(`${run}-stats`, () => {}, {
    sideTopics: BROKER_STATS_TOPICS,
    onSideMessage: brokerStatsHandler(metrics, undefined, (newly, total) => dropLog.push(`${newly}/${total}`)),
  });
  await eventually(() => stats.subscribed(), 10_000, "the stats subscription");

  await publishAll(run, 30);
  const gauge = async () => (await metrics.registry.getSingleMetric("mqtt_broker_queue_dropped")?.get())?.values[0]?.value;
  await eventually(async () => (await gauge()) === 20, 15_000, "mqtt_broker_queue_dropped = 20");
  expect(dropLog.at(-1)).toBe("20/20");
  expect(await metrics.registry.metrics()).toMatch(/mqtt_broker_stored_messages\{process="test"\} \d+/);
  // Mosquitto's own line, at notice level, which the config's log_type keeps.
  expect(broker.log()).toContain(`Outgoing messages are being dropped for client durable-${run}.`);
}, 60_000);
