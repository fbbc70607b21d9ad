// The bridge's MQTT subscriber against the real Mosquitto: a refused CONNECT and a refused SUBSCRIBE are reported
// (the bridge turns them into a log line, a metric and readiness false), never swallowed. And the broker's count of
// refused oversized messages ($SYS/identity-guard/oversized) reaches the bridge's metric, not its Kafka forwarder.
import { afterAll, describe, expect, test } from "bun:test";
import mqtt from "mqtt";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
import { createMqttCredentialStore, type MqttCredentials } from "../../lib/mqtt-credentials.ts";
import { BROKER_OVERSIZED_TOPIC, brokerStatsHandler, createMetrics } from "../../workers/metrics.ts";
import { startSubscriber, type Subscriber, type SubscriberProblem } from "../../workers/mqtt-subscriber.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { isolatedPipeline } from "../../tools/pipeline.ts";

const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl });
const running: Subscriber[] = [];
const revoke: string[] = [];
const processes: WorkerProcess[] = [];
afterAll(async () => {
  for (const p of processes) {
    p.proc.kill("SIGTERM");
    await p.proc.exited;
  }
  await Promise.all(running.map((s) => s.close()));
  await store.revokeMany(revoke);
  await store.close();
});

function urlAs(username: string, password: string): string {
  const u = new URL(config().mqttUrl);
  u.username = encodeURIComponent(username);
  u.password = encodeURIComponent(password);
  return u.toString();
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

function start(url: string, clientId: string, topics: string[]) {
  const problems: { kind: SubscriberProblem; detail: string }[] = [];
  const connected: string[] = [];
  const subscriber = startSubscriber({
    url,
    clientId,
    topics,
    onMessage: async () => {},
    onStatus: (event) => connected.push(event),
    onProblem: (kind, detail) => problems.push({ kind, detail }),
  });
  running.push(subscriber);
  return { subscriber, problems, connected };
}

describe("startSubscriber", () => {
  test("a refused CONNECT is reported with its CONNACK code, and retried", async () => {
    const { subscriber, problems } = start(urlAs("tester", "not-the-password"), `sub-refused-${process.pid}`, ["test/x"]);
    // Two reports: the first refusal and a retry's.
    await waitFor(() => problems.length >= 2, "two refusals");
    expect(problems[0]).toEqual({ kind: "connect_refused", detail: "CONNACK 5 (not authorized); retrying with backoff" });
    expect(subscriber.subscribed()).toBe(false);
  });

  test("a subscription the broker refuses (SUBACK 0x80) is reported and the subscriber is not ready", async () => {
    const phone = await store.issue(crypto.randomUUID());
    revoke.push(phone.username);
    // A driver trying to join the bridge's shared group.
    const { subscriber, problems } = start(urlAs(phone.username, phone.password), phone.client_id, [
      `$share/bridge/drivers/+/location`,
    ]);
    await waitFor(() => problems.length > 0, "the SUBACK");
    expect(problems[0]).toEqual({ kind: "subscribe_refused", detail: "SUBACK 0x80 for $share/bridge/drivers/+/location" });
    expect(subscriber.subscribed()).toBe(false);
  });

  test("granted subscriptions make it ready", async () => {
    const run = `sub-ok-${process.pid}`;
    const { subscriber, problems } = start(config().mqttUrl, run, [`$share/${run}/test/${run}/drivers/+/location`]);
    await waitFor(() => subscriber.subscribed(), "the SUBACK");
    expect(problems).toEqual([]);
  });

  test("a QoS 0 message its handler fails on is reported as lost (the broker will not resend it)", async () => {
    const run = `sub-q0-${process.pid}`;
    const topic = `test/${run}/drivers/d1/location`;
    const problems: { kind: SubscriberProblem; detail: string }[] = [];
    const subscriber = startSubscriber({
      url: config().mqttUrl,
      clientId: run,
      topics: [`$share/${run}/test/${run}/drivers/+/location`],
      onMessage: async () => {
        throw new Error("kafka away");
      },
      onProblem: (kind, detail) => problems.push({ kind, detail }),
    });
    running.push(subscriber);
    await waitFor(() => subscriber.subscribed(), "the SUBACK");
    const publisher = await mqtt.connectAsync(config().mqttUrl, { clientId: `${run}-pub`, reconnectPeriod: 0 });
    try {
      await publisher.publishAsync(topic, "{}", { qos: 0 });
      await waitFor(() => problems.length > 0, "the report");
    } finally {
      await publisher.endAsync();
    }
    expect(problems).toEqual([{ kind: "qos0_message_lost", detail: `${topic}: Error: kafka away` }]);
  });
});

/** A phone of its own that publishes one message over the broker's payload limit (MQTT 3.1.1: acknowledged, dropped). */
async function publishOversized(phone: MqttCredentials): Promise<void> {
  const u = new URL(config().mqttUrl);
  const client = await mqtt.connectAsync(`mqtt://${u.host}`, {
    username: phone.username,
    password: phone.password,
    clientId: phone.client_id,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  try {
    await client.publishAsync(`drivers/${phone.username}/location`, "x".repeat(300_000), { qos: 1 });
  } finally {
    await client.endAsync();
  }
}

describe("the broker's oversized count", () => {
  test("arrives on the side callback (never on onMessage) and sets mqtt_broker_oversized_dropped", async () => {
    const run = `sub-side-${process.pid}`;
    const metrics = createMetrics("test");
    const gauge = async () => (await metrics.registry.getSingleMetric("mqtt_broker_oversized_dropped")!.get()).values[0]?.value;
    const setGauge = brokerStatsHandler(metrics);
    const side: string[] = [];
    const data: string[] = [];
    const problems: string[] = [];
    const subscriber = startSubscriber({
      url: config().mqttUrl,
      clientId: run,
      topics: [`$share/${run}/test/${run}/drivers/+/location`],
      onMessage: async (topic) => {
        data.push(topic);
      },
      sideTopics: [BROKER_OVERSIZED_TOPIC],
      onSideMessage: (topic, payload) => {
        side.push(`${topic} ${payload.toString()}`);
        setGauge(topic, payload);
      },
      onProblem: (kind, detail) => problems.push(`${kind} ${detail}`),
    });
    running.push(subscriber);
    // The retained count (identity-guard publishes 0 at start, so there always is one).
    await waitFor(() => side.length > 0, "the retained count");
    await waitFor(() => subscriber.subscribed(), "the SUBACK");
    const before = Number(side[0]!.split(" ")[1]);
    expect(await gauge()).toBe(before);

    const phone = await store.issue(crypto.randomUUID());
    revoke.push(phone.username);
    await publishOversized(phone);
    await waitFor(() => side.length > 1, "the new count");
    expect(side[1]).toBe(`${BROKER_OVERSIZED_TOPIC} ${before + 1}`);
    expect(await gauge()).toBe(before + 1);
    expect(data).toEqual([]);
    expect(problems).toEqual([]);
  });

  test("the handler ignores other topics and payloads that are not a count", async () => {
    const metrics = createMetrics("test");
    const bad: string[] = [];
    const handle = brokerStatsHandler(metrics, (topic, payload) => bad.push(`${topic} ${payload}`));
    // Absent (not 0) until the broker's value arrived.
    handle(BROKER_OVERSIZED_TOPIC, Buffer.from("not a count"));
    expect(await metrics.registry.metrics()).not.toContain("mqtt_broker_oversized_dropped");
    handle(BROKER_OVERSIZED_TOPIC, Buffer.from("7"));
    handle(BROKER_OVERSIZED_TOPIC, Buffer.from("-1"));
    handle(BROKER_OVERSIZED_TOPIC, Buffer.from("seven"));
    handle("$SYS/identity-guard/other", Buffer.from("9"));
    const value = (await metrics.registry.getSingleMetric("mqtt_broker_oversized_dropped")!.get()).values[0]?.value;
    expect(value).toBe(7);
    expect(await metrics.registry.metrics()).toContain('mqtt_broker_oversized_dropped{process="test"} 7');
    expect(bad).toEqual([`${BROKER_OVERSIZED_TOPIC} not a count`, `${BROKER_OVERSIZED_TOPIC} -1`, `${BROKER_OVERSIZED_TOPIC} seven`, "$SYS/identity-guard/other 9"]);
  });

  test("the bridge (Node, as deployed) exports it on /metrics and follows it", async () => {
    const run = `ovs${process.pid}${Date.now() % 1e6}`;
    const pipeline = await isolatedPipeline(run, config().databaseUrl, 1);
    const bridge = await startNodeWorker("bridge", pipeline.bridgeEnv);
    processes.push(bridge);
    await bridge.waitFor("started");
    const port = Number(/"metricsPort":(\d+)/.exec(bridge.output())![1]);
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith("mqtt_broker_oversized_dropped{"));
      return line === undefined ? undefined : Number(line.split(" ").at(-1));
    };
    // The broker's current count, as a test subscriber reads it (retained).
    const counts: number[] = [];
    const reader = startSubscriber({
      url: config().mqttUrl,
      clientId: `${run}-reader`,
      topics: [],
      onMessage: async () => {},
      sideTopics: [BROKER_OVERSIZED_TOPIC],
      onSideMessage: (_, payload) => counts.push(Number(payload.toString())),
    });
    running.push(reader);
    await waitFor(() => counts.length > 0, "the retained count");
    const before = counts[0]!;
    // The bridge shows it once the retained message reached it (absent until then, not 0).
    await eventually(async () => (await scrape()) === before, 15_000, `mqtt_broker_oversized_dropped ${before} on /metrics`);
    const phone = await store.issue(crypto.randomUUID());
    revoke.push(phone.username);
    await publishOversized(phone);
    await waitFor(() => counts.length > 1, "the new count");
    expect(counts[1]).toBe(before + 1);
    await eventually(async () => (await scrape()) === before + 1, 15_000, `mqtt_broker_oversized_dropped ${before + 1} on /metrics`);
    expect(bridge.output()).not.toContain("unexpected broker stats message");
  });
});
