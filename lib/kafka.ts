/**
 * Kafka clients (@confluentinc/kafka-javascript). Producers use its KafkaJS-style promise API; the position worker
 * uses the rdkafka-style consumer, whose consume(n) hands over up to n messages across all assigned partitions at
 * once (the KafkaJS-style eachBatch hands one partition at a time, 32 messages by default).
 */
import { KafkaJS } from "@confluentinc/kafka-javascript";

export type Producer = KafkaJS.Producer;

export function createProducer(bootstrapServers: string, clientId: string): Producer {
  const kafka = new KafkaJS.Kafka({
    kafkaJS: { brokers: bootstrapServers.split(","), clientId, logLevel: KafkaJS.logLevel.ERROR },
  });
  return kafka.producer({
    // Idempotence implies acks=all and in-order retries: a retried send cannot duplicate or reorder one key.
    kafkaJS: { idempotent: true, acks: -1, compression: KafkaJS.CompressionTypes.LZ4 },
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
  });
}

export interface DlqRecord {
  key: string | null;
  value: Uint8Array | string;
  reason: string;
  source: string;
  detail?: string;
}

/** Sends rejected input to the dead-letter topic: the original bytes, `reason` from the closed list, and where from. */
export async function sendToDlq(producer: Producer, topic: string, records: DlqRecord[]): Promise<void> {
  if (records.length === 0) return;
  await producer.send({
    topic,
    messages: records.map((r) => ({
      key: r.key,
      value: Buffer.from(r.value),
      headers: { reason: r.reason, source: r.source, ...(r.detail ? { detail: r.detail } : {}) },
    })),
  });
}
