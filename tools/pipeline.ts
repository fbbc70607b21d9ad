/**
 * An ingest pipeline of its own for one test or benchmark run: its own Kafka topics, consumer group, MQTT topic
 * root and bridge identity, so runs never see each other's (or a running demo's) messages. Its bridge and worker log
 * in to Kafka as the test services `test-bridge` / `test-worker`, whose ACLs (infra/kafka/acls.conf, PREFIXED on
 * `test-…`) cover every run's topics and group and nothing of production's: no per-run ACL call (~2 s of JVM each).
 */
import type { Sql } from "../lib/db.ts";
import { serviceUrl } from "./service-url.ts";
import { createTopic } from "./kafka-cli.ts";

export interface IsolatedPipeline {
  /** The environment for bridges and workers of this run (add overrides as needed). */
  env: Record<string, string>;
  /** Prepend to MQTT topics this run publishes to. */
  prefix: string;
  topic: string;
  dlq: string;
  /** `env` plus the Kafka identity of a bridge of this run (`test-bridge`). */
  bridgeEnv: Record<string, string>;
  /** `env` plus the Kafka identity of a position worker of this run (`test-worker`). */
  workerEnv: Record<string, string>;
}

/** A Kafka login from the secrets bin/stack generated (test/preload.ts loads them). */
export function kafkaIdentity(username: string, passwordSecret: string): Record<string, string> {
  const password = process.env[passwordSecret];
  if (!password) throw new Error(`${passwordSecret} is not set: run bin/stack up (it generates .stack/secrets.env)`);
  return { KAFKA_USERNAME: username, KAFKA_PASSWORD: password, KAFKA_SASL_MECHANISM: "SCRAM-SHA-512" };
}

/** The MQTT login of tests' bridges and publishers: the stack's `tester` (bin/stack writes it into tools.env). */
export function mqttTester(): Record<string, string> {
  const url = process.env.MQTT_URL;
  if (!url || !new URL(url).username) throw new Error("MQTT_URL has no user: run bin/stack up (it writes .stack/tools.env)");
  return { MQTT_URL: url };
}

export async function isolatedPipeline(run: string, databaseUrl: string, partitions: number): Promise<IsolatedPipeline> {
  const topic = `test-pos-${run}`;
  const dlq = `test-dlq-${run}`;
  const prefix = `test/${run}/`;
  await createTopic(topic, partitions);
  await createTopic(dlq, 1);
  const env: Record<string, string> = {
    // Workers log in as the position worker's own role (the bridge has no database): the grants of 0009 are tested.
    DATABASE_URL: serviceUrl(databaseUrl, "tracking_worker"),
    KAFKA_TOPIC: topic,
    KAFKA_DLQ_TOPIC: dlq,
    KAFKA_GROUP_ID: `test-${run}`,
    MQTT_TOPIC_PREFIX: prefix,
    BRIDGE_SHARE_GROUP: run,
    BRIDGE_CLIENT_ID: run,
    METRICS_PORT: "0",
    // Fixture positions are minutes old; the offline sweep must not take the drivers off mid-run.
    OFFLINE_AFTER: "86400",
  };
  return {
    topic,
    dlq,
    prefix,
    env,
    // MQTT: the dev stack's test-only `tester` user (tools.env's MQTT_URL; infra/mosquitto/acl: test/# and shared
    // groups), with this run's own client id, so a run's bridge never takes over the demo bridge's session.
    bridgeEnv: { ...env, ...mqttTester(), ...kafkaIdentity("test-bridge", "KAFKA_TEST_BRIDGE_PASSWORD") },
    workerEnv: { ...env, ...kafkaIdentity("test-worker", "KAFKA_TEST_WORKER_PASSWORD") },
  };
}

/** n drivers with an (offline, position-less) state row; their ids in creation order. */
export async function seedDrivers(sql: Sql, n: number): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    insert into drivers (name) select 'driver ' || g from generate_series(1, ${n}) g returning id`;
  await sql`insert into driver_state (driver_id) select id from drivers where id = any(${rows.map((r) => r.id)}::uuid[])`;
  return rows.map((r) => r.id);
}

/**
 * A benchmark run's pipeline (bench:e2e, bench:catch-up, bench:fanout): topics `bench-pos-<run>` (8 partitions) and
 * `bench-dlq-<run>`, its own group, MQTT root `bench/<run>/` and share group; the test services' Kafka identities,
 * whose ACLs cover `bench-…` too. The workers' DATABASE_URL is the caller's to add (its own role, or via a proxy).
 */
export async function benchPipeline(run: string): Promise<IsolatedPipeline> {
  const topic = `bench-pos-${run}`;
  const dlq = `bench-dlq-${run}`;
  const prefix = `bench/${run}/`;
  await createTopic(topic, 8);
  await createTopic(dlq, 2);
  const env: Record<string, string> = {
    KAFKA_TOPIC: topic, KAFKA_DLQ_TOPIC: dlq, KAFKA_GROUP_ID: `bench-${run}`,
    MQTT_TOPIC_PREFIX: prefix, BRIDGE_SHARE_GROUP: `bench-${run}`, METRICS_PORT: "0",
  };
  return {
    topic, dlq, prefix, env,
    bridgeEnv: { ...env, ...kafkaIdentity("test-bridge", "KAFKA_TEST_BRIDGE_PASSWORD") },
    workerEnv: { ...env, ...kafkaIdentity("test-worker", "KAFKA_TEST_WORKER_PASSWORD") },
  };
}
