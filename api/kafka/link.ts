/**
 * What the API needs from Kafka: send records and wait for the broker's acknowledgement, and ask whether the broker
 * answers now. The Kafka client (@confluentinc/kafka-javascript, a native addon) runs on Node only — Bun's V8 shim
 * lacks symbols it calls — so the API (on Bun) reaches it through a Node sidecar (sidecar.ts) speaking this interface.
 */
import type { Producer } from "../../lib/kafka.ts";

export interface KafkaMessage {
  key: string;
  value: string;
}

export interface KafkaLink {
  /** Resolves once the broker has the records (the producer is idempotent with acks=all). */
  send(topic: string, messages: KafkaMessage[]): Promise<void>;
  /** Resolves if the broker answers a metadata request for the topic now; rejects otherwise. */
  probe(topic: string, timeoutMs: number): Promise<void>;
}

/** A KafkaLink over a connected producer (wherever the addon runs: the sidecar). */
export function kafkaLinkFromProducer(producer: Producer): KafkaLink & { close(): Promise<void> } {
  // The admin client shares the producer's connection, so a metadata answer proves this producer can reach the
  // broker now, not merely that it once connected.
  let admin: Promise<ReturnType<Producer["dependentAdmin"]>> | undefined;
  const connectedAdmin = () => {
    admin ??= (async () => {
      const client = producer.dependentAdmin();
      await client.connect();
      return client;
    })().catch((error: unknown) => {
      admin = undefined;
      throw error;
    });
    return admin;
  };

  return {
    async send(topic, messages) {
      await producer.send({ topic, messages });
    },
    async probe(topic, timeoutMs) {
      const client = await connectedAdmin();
      await client.fetchTopicMetadata({ topics: [topic], timeout: timeoutMs });
    },
    async close() {
      const client = await admin?.catch(() => undefined);
      admin = undefined;
      await client?.disconnect().catch(() => {});
    },
  };
}
