// The bridge's per-message path without a broker (pure, with a fake producer): what each MQTT message becomes on
// Kafka, what it counts, and that whatever fails, even synchronously inside the producer, comes back as the returned
// promise's rejection (the subscriber then leaves the message unacknowledged), never as a throw.
import { expect, test } from "bun:test";
import { config } from "../../lib/config.ts";
import type { OutgoingRecord, RecordProducer } from "../../lib/kafka.ts";
import { decodeRecord } from "../../lib/position-record.ts";
import { createForwarder } from "../../workers/forwarder.ts";
import { createMetrics } from "../../workers/metrics.ts";

const DRIVER = "6b1b6f0e-1111-4222-8333-944455556666";
const TOPICS = { main: "driver-pos-test", dlq: "driver-pos-dlq-test" };
const topic = (suffix: string) => `${config().mqttTopicPrefix}drivers/${DRIVER}/${suffix}`;
const fix = (lat = 40.7) => ({ lat, lon: -74, tst: Date.now() / 1000 - 1 });

type Behaviour = "ok" | "rejects" | "throws";
function fakeProducer(behaviour: Behaviour) {
  const sent: OutgoingRecord[] = [];
  const producer: RecordProducer = {
    connect: async () => {},
    disconnect: async () => {},
    send(record) {
      if (behaviour === "throws") throw new Error("local queue full");
      sent.push(record);
      return behaviour === "rejects" ? Promise.reject(new Error("delivery failed")) : Promise.resolve();
    },
  };
  return { producer, sent };
}

async function counted(metrics: ReturnType<typeof createMetrics>) {
  const messages = await metrics.messages.get();
  const by = (outcome: string) => messages.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  return {
    forwarded: by("forwarded"),
    rejected: by("rejected"),
    positionsIn: (await metrics.positionsIn.get()).values[0]?.value ?? 0,
    deadLetters: (await metrics.deadLetters.get()).values[0]?.value ?? 0,
  };
}

const CASES = [
  {
    name: "two good fixes: one binary record keyed by the driver",
    payload: JSON.stringify([fix(40.7), fix(40.701)]),
    producer: "ok",
    outcome: "resolves",
    records: [{ topic: TOPICS.main, key: DRIVER, positions: 2 }],
    counts: { forwarded: 1, rejected: 0, positionsIn: 2, deadLetters: 0 },
  },
  {
    name: "one good fix and one refused: the record and one dead letter",
    payload: JSON.stringify([fix(40.7), { lat: 91, lon: -74, tst: Date.now() / 1000 }]),
    producer: "ok",
    outcome: "resolves",
    records: [{ topic: TOPICS.main, key: DRIVER, positions: 1 }, { topic: TOPICS.dlq, key: DRIVER }],
    counts: { forwarded: 1, rejected: 0, positionsIn: 1, deadLetters: 1 },
  },
  {
    name: "not JSON: only a dead letter, counted as rejected",
    payload: "{not json",
    producer: "ok",
    outcome: "resolves",
    records: [{ topic: TOPICS.dlq, key: null }],
    counts: { forwarded: 0, rejected: 1, positionsIn: 0, deadLetters: 1 },
  },
  {
    name: "Kafka refuses the record: the promise rejects, nothing counted as forwarded",
    payload: JSON.stringify([fix()]),
    producer: "rejects",
    outcome: "rejects",
    records: [{ topic: TOPICS.main, key: DRIVER, positions: 1 }],
    counts: { forwarded: 0, rejected: 0, positionsIn: 0, deadLetters: 0 },
  },
  {
    name: "the producer throws synchronously: a rejection, not a throw",
    payload: JSON.stringify([fix()]),
    producer: "throws",
    outcome: "rejects",
    records: [],
    counts: { forwarded: 0, rejected: 0, positionsIn: 0, deadLetters: 0 },
  },
] as const;

test.each(CASES)("forward: $name", async (c) => {
  const { producer, sent } = fakeProducer(c.producer);
  const metrics = createMetrics("bridge-test");
  const forward = createForwarder(producer, metrics, TOPICS);
  let result: Promise<void> | undefined;
  let thrown: unknown;
  try {
    result = forward(topic("location"), Buffer.from(c.payload));
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeUndefined();
  if (c.outcome === "resolves") await expect(result!).resolves.toBeUndefined();
  else await expect(result!).rejects.toThrow();
  expect(
    sent.map((r) => {
      if (r.topic !== TOPICS.main) return { topic: r.topic, key: r.key };
      const decoded = decodeRecord(r.value as Buffer);
      if (!decoded.ok) throw new Error(decoded.detail);
      return { topic: r.topic, key: r.key, positions: decoded.record.positions.length };
    }),
  ).toEqual(c.records.map((r) => ({ ...r })));
  expect(await counted(metrics)).toEqual(c.counts);
});
