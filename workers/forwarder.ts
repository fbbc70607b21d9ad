/**
 * The bridge's per-message step (workers/bridge.ts runs it for each MQTT message): one phone message becomes one
 * binary Kafka record (lib/position-record.ts) on the main topic keyed by driver id, plus one dead letter with the
 * original bytes when some or all of its positions are refused. Kept apart from the bridge's process so it runs (and
 * is tested) without the Kafka addon.
 */
import { config } from "../lib/config.ts";
import { mainReason, sendToDlq } from "../lib/dead-letter.ts";
import type { RecordProducer } from "../lib/kafka.ts";
import { decodeMqttMessage } from "../lib/position.ts";
import { encodeRecord } from "../lib/position-record.ts";
import type { Metrics } from "./metrics.ts";

/** Turns one MQTT message into Kafka records; resolves once Kafka has all of them. */
export function createForwarder(producer: RecordProducer, metrics: Metrics, topics = { main: config().kafkaTopic, dlq: config().kafkaDlqTopic }) {
  const prefix = config().mqttTopicPrefix;
  // Once per message: the timing is a number (not prom-client's timer closures) and the work a promise chain.
  const forwarded = (startedMs: number, positions: number) => () => {
    metrics.forwardSeconds.observe((performance.now() - startedMs) / 1000);
    metrics.messages.inc({ outcome: "forwarded" });
    metrics.positionsIn.inc(positions);
  };
  function forward(fullTopic: string, payload: Buffer): Promise<void> {
    const startedMs = performance.now();
    const topic = fullTopic.slice(prefix.length);
    const decoded = decodeMqttMessage(topic, payload);
    if (!decoded.ok) {
      metrics.messages.inc({ outcome: "rejected" });
      metrics.positionsRejected.inc({ reason: decoded.reason });
      metrics.deadLetters.inc();
      return sendToDlq(producer, topics.dlq, [
        { key: null, value: payload, reason: decoded.reason, source: `mqtt:${topic}`, detail: decoded.detail },
      ]);
    }
    // The binary record (lib/position-record.ts): the same content as JSON v1, without JSON's cost on either side.
    const value = encodeRecord(decoded.driverId, Date.now(), decoded.positions);
    const sent = producer.send({ topic: topics.main, key: decoded.driverId, value });
    const done = forwarded(startedMs, decoded.positions.length);
    if (decoded.rejects.length === 0) return sent.then(done);
    for (const r of decoded.rejects) metrics.positionsRejected.inc({ reason: r.reason });
    // One dead letter for the message, its bytes once, its refused positions listed by index (not one copy each).
    metrics.deadLetters.inc();
    const deadLettered = sendToDlq(producer, topics.dlq, [
      {
        key: decoded.driverId,
        value: payload,
        reason: mainReason(decoded.rejects),
        source: `mqtt:${topic}`,
        detail: `${decoded.rejects.length} of ${decoded.rejects.length + decoded.positions.length} positions refused`,
        refused: decoded.rejects,
      },
    ]);
    return Promise.all([sent, deadLettered]).then(done);
  }
  // Whatever throws becomes the returned promise's rejection (the message then stays unacknowledged), as it did when
  // this was an async function.
  return (fullTopic: string, payload: Buffer): Promise<void> => {
    try {
      return forward(fullTopic, payload);
    } catch (error) {
      return Promise.reject(error);
    }
  };
}
