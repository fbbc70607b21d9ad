/**
 * An ingest pipeline of its own for one test or benchmark run: its own Kafka topics, consumer group, MQTT topic
 * root and bridge identity, so runs never see each other's (or a running demo's) messages.
 */
import type { Sql } from "../../lib/db.ts";
import { createTopic } from "./kafka-cli.ts";

export interface IsolatedPipeline {
  /** The environment for bridges and workers of this run (add overrides as needed). */
  env: Record<string, string>;
  /** Prepend to MQTT topics this run publishes to. */
  prefix: string;
  topic: string;
  dlq: string;
}

export async function isolatedPipeline(run: string, databaseUrl: string, partitions: number): Promise<IsolatedPipeline> {
  const topic = `test-pos-${run}`;
  const dlq = `test-dlq-${run}`;
  const prefix = `test/${run}/`;
  await createTopic(topic, partitions);
  await createTopic(dlq, 1);
  return {
    topic,
    dlq,
    prefix,
    env: {
      DATABASE_URL: databaseUrl,
      KAFKA_TOPIC: topic,
      KAFKA_DLQ_TOPIC: dlq,
      KAFKA_GROUP_ID: `test-${run}`,
      MQTT_TOPIC_PREFIX: prefix,
      BRIDGE_SHARE_GROUP: run,
      BRIDGE_CLIENT_ID: run,
      METRICS_PORT: "0",
      // Fixture positions are minutes old; the offline sweep must not take the drivers off mid-run.
      OFFLINE_AFTER: "86400",
    },
  };
}

/** n drivers with an (offline, position-less) state row; their ids in creation order. */
export async function seedDrivers(sql: Sql, n: number): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    insert into drivers (name) select 'driver ' || g from generate_series(1, ${n}) g returning id`;
  await sql`insert into driver_state (driver_id) select id from drivers where id = any(${rows.map((r) => r.id)}::uuid[])`;
  return rows.map((r) => r.id);
}
