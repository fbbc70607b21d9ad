// The bridge's MQTT subscriber against the real Mosquitto: a refused CONNECT and a refused SUBSCRIBE are reported
// (the bridge turns them into a log line, a metric and readiness false), never swallowed.
import { afterAll, describe, expect, test } from "bun:test";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
import { createMqttCredentialStore } from "../../lib/mqtt-credentials.ts";
import { startSubscriber, type Subscriber, type SubscriberProblem } from "../../workers/mqtt-subscriber.ts";

const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl });
const running: Subscriber[] = [];
const revoke: string[] = [];
afterAll(async () => {
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
});
