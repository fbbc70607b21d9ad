/**
 * Everything a page test needs, real and isolated: a fresh database, the API on a real port, and an ingest pipeline
 * of the test's own (bridge and position worker as Node processes, its own topics and MQTT root), so positions
 * published over MQTT reach the page the way a phone's would.
 */
import mqtt, { type MqttClient } from "mqtt";
import { createApp } from "../../../api/app.ts";
import { config } from "../../../lib/config.ts";
import { startNodeWorker, type WorkerProcess } from "../../../tools/node-workers.ts";
import { isolatedPipeline, type IsolatedPipeline } from "../../../tools/pipeline.ts";
import { OPS } from "../../api/support/auth.ts";
import { type Harness, kafkaDown, startHarness } from "../../api/support/harness.ts";
import { allowTeleports } from "../../api/support/seed.ts";
import { freePort } from "../../api/support/server-process.ts";

export interface LiveStack {
  h: Harness;
  pipeline: IsolatedPipeline;
  /** The API's base URL (a real socket, for the browser). */
  base: string;
  /** The workers' Prometheus endpoints, which the operations page's health panel reads. */
  metricsUrls: string[];
  opsToken: string;
  /** Publishes one fix of `driverId` over MQTT (QoS 1), dated now unless told. */
  publish(driverId: string, fix: { lat: number; lon: number; tst?: number }): Promise<void>;
  /** Publishes a raw payload to a driver's topic (bad input, for the dead-letter panel). */
  publishRaw(driverId: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export async function startLiveStack(label: string): Promise<LiveStack> {
  const h = await startHarness(label);
  // Test drivers hop across a neighbourhood in seconds: the speed check would refuse them (see allowTeleports).
  await allowTeleports(h.sql);
  const run = `${label.replace(/[^a-z0-9]/gi, "")}${process.pid}${Date.now() % 1e6}`;
  const pipeline = await isolatedPipeline(run, h.db.url, 2);
  const [bridgePort, workerPort] = [await freePort(), await freePort()];
  const metricsUrls = [`http://127.0.0.1:${bridgePort}/metrics`, `http://127.0.0.1:${workerPort}/metrics`];
  const workers: WorkerProcess[] = [];
  const bridge = await startNodeWorker("bridge", { ...pipeline.bridgeEnv, METRICS_PORT: String(bridgePort), BATCH_MAX_WAIT_MS: "20" });
  workers.push(bridge);
  await bridge.waitFor("mqtt connected");
  const worker = await startNodeWorker("positions", { ...pipeline.workerEnv, METRICS_PORT: String(workerPort), BATCH_MAX_WAIT_MS: "20" });
  workers.push(worker);
  await worker.waitFor("partitions assign");

  // The same app as production, on the harness's database and feed, with these workers' endpoints for the panel.
  const app = createApp({
    sql: h.apiSql,
    kafka: kafkaDown(),
    positionsTopic: pipeline.topic,
    feed: h.feed,
    auth: h.auth,
    opsMetricsUrls: metricsUrls,
  }).listen({ port: 0, hostname: "127.0.0.1" });
  const base = `http://127.0.0.1:${app.server!.port}`;
  const publisher: MqttClient = await mqtt.connectAsync(config().mqttUrl, { clientId: `test-pub-${run}` });
  const topic = (driverId: string) => `${pipeline.prefix}drivers/${driverId}/location`;

  return {
    h,
    pipeline,
    base,
    metricsUrls,
    opsToken: await h.tokenFor(OPS),
    async publish(driverId, fix) {
      const tst = fix.tst ?? Date.now() / 1000;
      await publisher.publishAsync(topic(driverId), JSON.stringify({ lat: fix.lat, lon: fix.lon, tst, acc: 5 }), { qos: 1 });
    },
    async publishRaw(driverId, payload) {
      await publisher.publishAsync(topic(driverId), payload, { qos: 1 });
    },
    async close() {
      await publisher.endAsync();
      await app.stop(true);
      for (const w of workers) w.proc.kill("SIGTERM");
      await Promise.all(workers.map((w) => w.proc.exited));
      await h.close();
    },
  };
}
