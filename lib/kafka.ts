/**
 * Kafka clients (@confluentinc/kafka-javascript). Producers use its KafkaJS-style promise API; the position worker
 * uses the rdkafka-style consumer, whose consume(n) hands over up to n messages across all assigned partitions at
 * once (the KafkaJS-style eachBatch hands one partition at a time, 32 messages by default).
 */
import { KafkaJS, RdKafka } from "@confluentinc/kafka-javascript";
import { config, type KafkaSasl } from "./config.ts";

/**
 * librdkafka's login settings for an identity: SASL/SCRAM over the loopback listener, or none (plaintext, which the
 * stack's broker refuses). Every client below takes its identity from config() unless a caller passes another.
 */
export function kafkaSecurityConfig(sasl: KafkaSasl | null = config().kafkaSasl): Record<string, string> {
  if (!sasl) return { "security.protocol": "plaintext" };
  return {
    "security.protocol": "sasl_plaintext",
    "sasl.mechanisms": sasl.mechanism,
    "sasl.username": sasl.username,
    "sasl.password": sasl.password,
  };
}

export type Producer = KafkaJS.Producer;

export function createProducer(bootstrapServers: string, clientId: string, sasl = config().kafkaSasl): Producer {
  const kafka = new KafkaJS.Kafka({
    kafkaJS: { brokers: bootstrapServers.split(","), clientId, logLevel: KafkaJS.logLevel.ERROR },
    ...kafkaSecurityConfig(sasl),
  });
  return kafka.producer({
    // Idempotence implies acks=all and in-order retries: a retried send cannot duplicate or reorder one key.
    kafkaJS: { idempotent: true, acks: -1, compression: KafkaJS.CompressionTypes.LZ4 },
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
  });
}

/** Bytes as they are (librdkafka copies a payload as it is produced, RK_MSG_COPY), a string as UTF-8. */
const asBuffer = (value: Buffer | string): Buffer => (typeof value === "string" ? Buffer.from(value) : value);

export interface OutgoingRecord {
  topic: string;
  key: string | null;
  value: Buffer | string;
  headers?: { [name: string]: string };
}

export interface RecordProducer {
  connect(): Promise<void>;
  /** Resolves once Kafka has the record (acks=all), rejects with the delivery error. */
  send(record: OutgoingRecord): Promise<void>;
  disconnect(): Promise<void>;
}

/**
 * The hot-path producer (bridge, DLQ): librdkafka's own produce() and delivery reports. It carries one pending
 * promise per record in a map instead of the KafkaJS-style wrapper's per-call machinery: measured here, 220K
 * records/s against 46K/s for KafkaJS-style send() of single records.
 */
export function createRecordProducer(bootstrapServers: string, clientId: string, sasl = config().kafkaSasl): RecordProducer {
  const producer = new RdKafka.Producer({
    "metadata.broker.list": bootstrapServers,
    "client.id": clientId,
    ...kafkaSecurityConfig(sasl),
    dr_cb: true,
    // Idempotence implies acks=all and in-order retries: a retried send cannot duplicate or reorder one key.
    "enable.idempotence": true,
    "compression.codec": "lz4",
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
  });
  const pending = new Map<number, { resolve(): void; reject(error: Error): void }>();
  let nextId = 0;
  producer.on("delivery-report", (err, report) => {
    const waiter = pending.get(report.opaque as number);
    if (!waiter) return;
    pending.delete(report.opaque as number);
    if (err) waiter.reject(new Error(`Kafka delivery failed: ${err.message} (${err.code})`));
    else waiter.resolve();
  });
  return {
    connect: () =>
      new Promise<void>((resolve, reject) => {
        producer.setPollInterval(5);
        producer.connect({ timeout: 30_000 }, (err) => (err ? reject(err) : resolve()));
      }),
    send(record) {
      return new Promise<void>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve, reject });
        const headers = record.headers ? Object.entries(record.headers).map(([k, v]) => ({ [k]: v })) : undefined;
        try {
          producer.produce(record.topic, null, asBuffer(record.value), record.key, Date.now(), id, headers);
        } catch (error) {
          // Local queue full or an unknown topic: the caller decides (the bridge then leaves the message unacked).
          pending.delete(id);
          reject(error as Error);
        }
      });
    },
    disconnect: () =>
      new Promise<void>((resolve) => {
        producer.flush(10_000, () => producer.disconnect(() => resolve()));
      }),
  };
}

// The DLQ's record and its sending live in dead-letter.ts (no Kafka addon there, so pure code and tests can use them).
export { sendToDlq, type DlqRecord } from "./dead-letter.ts";

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  timestamp?: number;
}

export interface BatchConsumer {
  /** Up to `max` messages from all assigned partitions, returning early once `windowMs` has passed. */
  nextBatch(max: number, windowMs: number): Promise<ConsumedMessage[]>;
  /** Commits, per partition, the offset after the last message of the batch (call after the batch is durable). */
  commitBatch(messages: ConsumedMessage[]): void;
  /**
   * Waits for `work` (the batch in hand, which the caller cannot finish yet: the database is away) while keeping this
   * consumer in its group: once `work` has taken a quarter of max.poll.interval.ms (at most 30 s), every assigned
   * partition is paused and the consumer keeps polling. librdkafka drops a member that has not polled for
   * max.poll.interval.ms and its batch goes to another (found by bench:catch-up: a worker died as a 10-minute
   * database outage ended). Messages fetched before the pause took effect are kept for the next batch; on resume,
   * fetching goes on from where the caller stopped.
   */
  holdWhile<T>(work: Promise<T>, onHold?: (heldMs: number) => void): Promise<T>;
  /** Consumer lag per partition from the broker's high watermark, for metrics. */
  lag(): Promise<Map<string, number>>;
  disconnect(): Promise<void>;
}

export interface BatchConsumerOptions {
  bootstrapServers: string;
  groupId: string;
  topics: string[];
  clientId: string;
  /** The login; config().kafkaSasl when absent. */
  sasl?: KafkaSasl | null;
  fromBeginning?: boolean;
  /** librdkafka's max.poll.interval.ms: a member that does not poll for this long leaves the group (default 300 s). */
  maxPollIntervalMs?: number;
  onRebalance?: (event: "assign" | "revoke", partitions: { topic: string; partition: number }[]) => void;
}

const noop = () => {};

/** While holding: how often the paused consumer polls (well inside any max.poll.interval.ms librdkafka accepts). */
const HOLD_POLL_MS = 1_000;

export async function createBatchConsumer(options: BatchConsumerOptions): Promise<BatchConsumer> {
  const { KafkaConsumer, CODES } = RdKafka;
  const maxPollIntervalMs = options.maxPollIntervalMs ?? 300_000;
  // A batch slower than a quarter of the poll interval is held (at most 30 s, so a normal slow batch is not).
  const holdAfterMs = Math.min(30_000, Math.floor(maxPollIntervalMs / 4));
  const consumer = new KafkaConsumer(
    {
      "metadata.broker.list": options.bootstrapServers,
      "group.id": options.groupId,
      "client.id": options.clientId,
      ...kafkaSecurityConfig(options.sasl === undefined ? config().kafkaSasl : options.sasl),
      // Offsets are committed by hand after the database transaction commits: at-least-once, never at-most-once.
      "enable.auto.commit": false,
      "enable.auto.offset.store": false,
      "fetch.min.bytes": 1,
      "fetch.wait.max.ms": 20,
      // Prefetch bound: 8 MB is seconds of positions at 25K/s, several full batches; librdkafka's 64 MB default
      // only made the worker's memory grow while it caught up.
      "queued.max.messages.kbytes": 8_192,
      // One fetch response at most 8 MB (librdkafka: 50 MB), so a worker catching up does not hold a backlog in C.
      "fetch.max.bytes": 8 * 1024 * 1024,
      "partition.assignment.strategy": "cooperative-sticky",
      // A crashed worker's partitions move to the survivors after 10 s, not the default 45 s.
      "session.timeout.ms": 10_000,
      "heartbeat.interval.ms": 1_000,
      "max.poll.interval.ms": maxPollIntervalMs,
      // `true`: the client does the (incremental) assign/unassign itself and emits 'rebalance' for us to observe.
      rebalance_cb: true,
    },
    { "auto.offset.reset": options.fromBeginning === false ? "latest" : "earliest" },
  );
  consumer.on("rebalance", (err, assignment) => {
    if (err.code === CODES.ERRORS.ERR__ASSIGN_PARTITIONS) options.onRebalance?.("assign", assignment);
    else if (err.code === CODES.ERRORS.ERR__REVOKE_PARTITIONS) options.onRebalance?.("revoke", assignment);
  });
  await new Promise<void>((resolve, reject) => {
    consumer.connect({ timeout: 30_000 }, (err) => (err ? reject(err) : resolve()));
  });
  consumer.subscribe(options.topics);
  consumer.setDefaultConsumeTimeout(10);

  const consumeOnce = (max: number) =>
    new Promise<ConsumedMessage[]>((resolve, reject) => {
      consumer.consume(max, (err, messages) => (err ? reject(err) : resolve(messages as ConsumedMessage[])));
    });

  // Messages fetched while holding (a partition assigned during the hold, before it was paused too).
  const carried: ConsumedMessage[] = [];

  return {
    async nextBatch(max, windowMs) {
      const deadline = Date.now() + windowMs;
      const batch: ConsumedMessage[] = carried.splice(0, max);
      while (batch.length < max && Date.now() < deadline) {
        const got = await consumeOnce(Math.min(max - batch.length, 5_000));
        for (const m of got) batch.push(m);
      }
      return batch;
    },
    async holdWhile(work, onHold) {
      let settled = false;
      const done = work.finally(() => (settled = true));
      const settledOrLater = (ms: number) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const later = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
        return Promise.race([done.then(noop, noop), later]).finally(() => clearTimeout(timer));
      };
      await settledOrLater(holdAfterMs);
      if (settled) return done;
      const heldSince = Date.now() - holdAfterMs;
      try {
        while (!settled) {
          // Every poll re-pauses what is assigned now: a rebalance may have handed this member new partitions.
          consumer.pause(consumer.assignments());
          for (const m of await consumeOnce(5_000)) carried.push(m);
          onHold?.(Date.now() - heldSince);
          await settledOrLater(HOLD_POLL_MS);
        }
      } finally {
        consumer.resume(consumer.assignments());
      }
      return done;
    },
    commitBatch(messages) {
      const next = new Map<string, { topic: string; partition: number; offset: number }>();
      for (const m of messages) {
        const k = `${m.topic}/${m.partition}`;
        const seen = next.get(k);
        if (!seen || seen.offset <= m.offset) next.set(k, { topic: m.topic, partition: m.partition, offset: m.offset + 1 });
      }
      if (next.size > 0) consumer.commitSync([...next.values()]);
    },
    async lag() {
      const out = new Map<string, number>();
      const assigned = consumer.assignments();
      const positions = consumer.position(assigned);
      for (const p of positions) {
        const offsets = await new Promise<{ highOffset: number }>((resolve, reject) =>
          consumer.queryWatermarkOffsets(p.topic, p.partition, 1000, (err, o) => (err ? reject(err) : resolve(o))),
        );
        const at = typeof p.offset === "number" && p.offset >= 0 ? p.offset : offsets.highOffset;
        out.set(`${p.topic}/${p.partition}`, Math.max(0, offsets.highOffset - at));
      }
      return out;
    },
    async disconnect() {
      await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
    },
  };
}

/** Creates topics if missing (tests make their own; production topics come from bin/stack). */
export async function ensureTopics(
  bootstrapServers: string,
  topics: { topic: string; partitions: number }[],
  sasl = config().kafkaSasl,
) {
  const kafka = new KafkaJS.Kafka({
    kafkaJS: { brokers: bootstrapServers.split(","), logLevel: KafkaJS.logLevel.ERROR },
    ...kafkaSecurityConfig(sasl),
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length > 0) {
      await admin.createTopics({
        // -1: the brokers' default.replication.factor (1 on the single broker, 3 on `bin/stack up --kafka-brokers 3`,
        // where min.insync.replicas=2 would refuse acks=all writes to a topic of one replica).
        topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.partitions, replicationFactor: -1 })),
      });
    }
  } finally {
    await admin.disconnect();
  }
}
