/**
 * The mode publisher (`bun run workers -- modes`; on Bun, it has no Kafka client). Tells each phone how to report:
 * LISTENs on `driver_mode` (migration 0013: one notice per driver whose reporting mode changed) and publishes
 * `{"v":1,"mode","state","at"}` retained, QoS 1, on the driver's own `drivers/{id}/cmd` (workers/mode-publisher/).
 *
 * Notices are lost while nobody listens (and skipped by the database while its notification queue is over
 * tracking.notify_queue_limit), so it reconciles: at start and whenever its LISTEN connection came back, and when
 * the database's count of skipped mode notices grew. A reconciliation publishes only the drivers whose mode differs
 * from the one last published (driver_mode_published), page by page, rate-limited. When the broker connection comes
 * back, the commands of the last two minutes are published again (a crashed broker loses its newest retained ones).
 *
 * Identity: PostgreSQL role tracking_modes (calls three functions, nothing else), MQTT user `modes` (writes
 * drivers/+/cmd, nothing else). /metrics and /ready (ready: listening, and the broker connected) on METRICS_PORT.
 */
import mqtt from "mqtt";
import { config } from "../lib/config.ts";
import { connectDatabase } from "../lib/db.ts";
import { exitCodeFor } from "../lib/errors.ts";
import { logger } from "./log.ts";
import { serveMetrics } from "./metrics.ts";
import { parseModeNotice } from "./mode-publisher/command.ts";
import { createModeMetrics } from "./mode-publisher/metrics.ts";
import { createModePublisher } from "./mode-publisher/publisher.ts";

const log = logger("modes");
export const MODE_CHANNEL = "driver_mode";

async function main() {
  const cfg = config();
  const metrics = createModeMetrics();
  // One pooled connection for the pages and records; LISTEN takes a dedicated one of its own.
  const sql = connectDatabase(cfg.databaseUrl, { max: 1, application: "mode-publisher" });

  // A persistent session (clean: false): QoS 1 commands in flight when the connection drops are sent again.
  const client = mqtt.connect(cfg.mqttUrl, {
    clientId: cfg.modesClientId,
    clean: false,
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 3_600 },
    reconnectPeriod: 1_000,
    connectTimeout: 10_000,
  });
  let connectRefusals = 0;
  let connects = 0;
  client.on("connect", () => {
    log.info(++connects === 1 ? "mqtt connected" : "mqtt connected again", { clientId: cfg.modesClientId });
    // A broker that crashed lost the retained commands since its last autosave: publish the recent ones again.
    if (connects > 1) publisher.republishRecent();
  });
  client.on("error", (error) => {
    connectRefusals++;
    if (connectRefusals <= 3 || connectRefusals % 60 === 0) log.warn("mqtt error", { error: String(error) });
  });

  const publisher = createModePublisher({
    sql,
    mqtt: client,
    metrics,
    log,
    topicPrefix: cfg.mqttTopicPrefix,
    pageSize: cfg.modesReconcilePageSize,
    perSecond: cfg.modesReconcilePerSecond,
  });

  let stopping = false;
  let listens = 0;
  let databaseOk = false;
  // postgres.js re-establishes a LISTEN that was in place; a first attempt that failed (the database away at start)
  // is tried again here.
  const listen = (): Promise<unknown> => sql.listen(
    MODE_CHANNEL,
    (payload) => {
      const change = parseModeNotice(payload);
      if (change) publisher.notice(change);
    },
    // Called once LISTEN is in place, and again after postgres.js re-established it: what was sent meanwhile is lost.
    () => {
      listens++;
      databaseOk = true;
      log.info(listens === 1 ? "listening" : "listening again", { channel: MODE_CHANNEL });
      publisher.reconcile(listens === 1 ? "start" : "listen_reconnected");
    },
  ).catch(async (error: unknown) => {
    log.warn("LISTEN failed; retrying", { error: String(error) });
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    return stopping ? undefined : listen();
  });
  void listen();

  // The database's count of skipped mode notices: growth means some phone was not told; reconcile.
  let skipped: bigint | undefined;
  const check = async () => {
    try {
      const [status] = await sql<{ usage: number; skipped: bigint }[]>`select * from driver_mode_notice_status()`;
      databaseOk = true;
      metrics.notifyQueueUsage.set(status!.usage);
      metrics.noticesSkipped.set(Number(status!.skipped));
      if (skipped !== undefined && status!.skipped > skipped) {
        log.warn("mode notices were skipped by the database (its notification queue was over the limit)", {
          newlySkipped: Number(status!.skipped - skipped),
        });
        publisher.reconcile("notices_skipped");
      }
      skipped = status!.skipped;
    } catch (error) {
      databaseOk = false;
      log.warn("reading the skipped-notice count failed", { error: String(error) });
    }
  };
  const checker = setInterval(() => void check(), cfg.modesCheckEveryMs);
  await check();

  const server = await serveMetrics(metrics.registry, cfg.metricsPort, () => client.connected && databaseOk && listens > 0);
  log.info("started", { metricsPort: server.port, clientId: cfg.modesClientId });
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal });
    clearInterval(checker);
    await publisher.stop();
    await client.endAsync();
    await sql.end({ timeout: 5 });
    server.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

if (import.meta.main) {
  main().catch((err) => {
    log.error("fatal", { error: String(err) });
    process.exit(exitCodeFor(err));
  });
}
