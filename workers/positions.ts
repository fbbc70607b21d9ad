/**
 * The position worker. Runs on Node (see bin/stack for why). Consumer group `position-workers`: takes large
 * batches from `driver-pos`, decodes and checks them, COPYs them into staging and runs the apply procedure in one
 * transaction, and commits the batch's Kafka offsets only after that transaction committed (at-least-once delivery;
 * the procedure is idempotent, so a redelivered batch changes nothing). Rejects go to `driver-pos-dlq`.
 *
 * Back-pressure: while the database refuses a batch, the worker retries that batch with backoff and consumes
 * nothing else, so memory stays at two batches (the one applying and the next one, decoded meanwhile). Once a batch
 * has waited a while, its partitions are paused and the consumer keeps polling, so an outage longer than
 * max.poll.interval.ms does not drop the worker from its group (lib/kafka.ts holdWhile). On SIGTERM it
 * finishes the current batch (or abandons it uncommitted if the database is down) and leaves the group.
 *
 * This file is the consumer loop; the retry policy is apply-retry.ts, the isolation of refused rows
 * isolate-refused.ts, the dead letters dead-letters.ts, the worker's own timers upkeep.ts. The database's scheduled
 * upkeep (the offline sweep, trail partitions and compaction) runs inside PostgreSQL (pg_cron, migration 0024), once
 * however many workers there are; the worker reports its Kafka lag there, so the compaction yields to ingest.
 */
import { hostname } from "node:os";
import { config } from "../lib/config.ts";
import { connectDatabase, sqlState } from "../lib/db.ts";
import { exitCodeFor } from "../lib/errors.ts";
import { createBatchConsumer, createRecordProducer, sendToDlq, type ConsumedMessage } from "../lib/kafka.ts";
import { applyPositionBatch, mergeResults, splitByDriver, type ApplyResult } from "./apply-batch.ts";
import { UNKNOWN_ERROR_TRIES, withApplyRetries } from "./apply-retry.ts";
import { deadLetters, sqlRejects } from "./dead-letters.ts";
import { type DecodedBatch, decodeBatchYielding } from "./decode-batch.ts";
import { applyIsolating } from "./isolate-refused.ts";
import { logger } from "./log.ts";
import { createMetrics, notifyQueueWatch, serveMetrics } from "./metrics.ts";
import { scheduleUpkeep } from "./upkeep.ts";

const log = logger("positions");

async function main() {
  const cfg = config();
  const metrics = createMetrics("positions");
  // One connection per parallel apply, and one for the upkeep timers.
  const sql = connectDatabase(cfg.databaseUrl, { max: cfg.applyConnections + 1, application: "position-worker" });
  const producer = createRecordProducer(cfg.kafkaBootstrapServers, "position-worker-dlq");
  await producer.connect();
  const consumer = await createBatchConsumer({
    bootstrapServers: cfg.kafkaBootstrapServers,
    groupId: cfg.kafkaGroupId,
    topics: [cfg.kafkaTopic],
    clientId: `position-worker-${process.pid}`,
    maxPollIntervalMs: cfg.kafkaMaxPollIntervalMs,
    onRebalance: (event, partitions) =>
      log.info(`partitions ${event}`, { partitions: partitions.map((p) => p.partition) }),
  });
  // Ready while batches get applied: a batch that has kept failing (the database away, a lock storm) for longer than
  // WORKER_STALLED_AFTER_MS makes /ready answer 503, so an orchestrator sees a worker that cannot make progress.
  let failingSince: number | undefined;
  const server = await serveMetrics(
    metrics.registry,
    cfg.metricsPort,
    () => failingSince === undefined || Date.now() - failingSince < cfg.workerStalledAfterMs,
  );
  log.info("started", { group: cfg.kafkaGroupId, topic: cfg.kafkaTopic, metricsPort: server.port });

  let stopping = false;
  process.on("SIGTERM", () => (stopping = true));
  process.on("SIGINT", () => (stopping = true));

  // OFFLINE_AFTER lives in tracking_settings from here on, so the sweep and assignment (called by the API) agree;
  // so do the trail compaction's settings, which the database's own scheduled job reads (migration 0024).
  // A worker (re)started while the database is away waits for it, as a running one does, instead of exiting into its
  // supervisor's crash-loop count (found by the chaos run: a worker restarted during a 60 s cut gave up).
  await withApplyRetries(
    () => sql`
      update tracking_settings
      set offline_after_s = ${cfg.offlineAfterSeconds},
          trail_compaction_drivers_per_step = ${cfg.trailCompactionDriversPerStep},
          trail_compaction_spread_s = ${Math.round(cfg.trailCompactionSpreadMs / 1000)},
          trail_compaction_yield_lag = ${cfg.trailCompactionYieldLag}
      where id = 1`,
    {
      unknownTries: 1,
      isStopping: () => stopping,
      onRetry: (error, kind, backoffMs) => log.warn("database not reachable at start; waiting", { error: String(error), kind, backoffMs }),
    },
  );
  const watchNotifyQueue = notifyQueueWatch(metrics, (newlySkipped, total, usage) =>
    log.warn("order notices skipped: the database's notification queue is over its limit (a listener is not reading)", {
      newlySkipped,
      total,
      queueUsage: usage,
    }),
  );
  // This worker's name in the database's lag reports (ingest_lag): the trail compaction waits while their sum is high.
  const lagReporter = `${hostname()}:${process.pid}`;
  const upkeep = scheduleUpkeep(
    [
      {
        // The LISTEN/NOTIFY queue and the order notices skipped because it was over its limit (migration 0012).
        name: "notify_queue",
        everyMs: 5_000,
        run: async () => watchNotifyQueue((await sql<{ usage: number; skipped: bigint }[]>`select * from notify_queue_status()`)[0]!),
      },
      {
        // The database's own jobs (pg_cron, 0024/0025): how long since each last finished its work.
        name: "upkeep_heartbeats",
        everyMs: 5_000,
        run: async () => {
          for (const { job, age_s } of await sql<{ job: string; age_s: number }[]>`select job, age_s from upkeep_heartbeats()`) {
            metrics.upkeepJobAge.set({ job }, age_s);
          }
        },
      },
      {
        name: "consumer_lag",
        everyMs: 2_000,
        run: async () => {
          const lag = [...(await consumer.lag()).values()].reduce((a, b) => a + b, 0);
          metrics.consumerLag.set(lag);
          await sql`select report_ingest_lag(${lagReporter}, ${lag})`;
        },
      },
    ],
    (job, error) => {
      metrics.upkeepFailures.inc({ job });
      log.warn("upkeep failed", { job, error: String(error) });
    },
  );

  /** Applies rows in one transaction, retrying what a retry can fix (apply-retry.ts). */
  const applyRetrying = (rows: DecodedBatch["rows"], wholeBatch: boolean) =>
    withApplyRetries(() => applyPositionBatch(sql, rows), {
      // An unknown error is retried on the whole batch; once it kept failing, its halves are not retried again.
      unknownTries: wholeBatch ? UNKNOWN_ERROR_TRIES : 1,
      isStopping: () => stopping,
      onRetry: (error, kind, backoffMs) => {
        failingSince ??= Date.now();
        metrics.retries.inc({ cause: sqlState(error) ?? kind });
        log.warn("batch apply failed; retrying", { error: String(error), kind, backoffMs });
      },
    });

  /** Applies one batch; undefined if asked to stop while the database was away. */
  async function applyWithRetry(rows: DecodedBatch["rows"]) {
    const started = performance.now();
    const refused: number[] = [];
    const parts = await Promise.all(
      splitByDriver(rows, cfg.applyConnections).map((part) =>
        applyIsolating(part, applyRetrying, (row, error) => {
          log.warn("position refused by the database", { error: String(error), driver: row.driverId });
          refused.push(row.seq);
        }),
      ),
    );
    if (parts.some((part) => part === undefined)) return undefined;
    const result = (parts as ApplyResult[]).reduce(mergeResults);
    for (const seq of refused) {
      result.rejected_seq.push(seq);
      result.rejected_reason.push("rejected_by_database");
    }
    failingSince = undefined;
    return { result, applyMs: performance.now() - started, committedAt: Date.now() };
  }

  let window = { batches: 0, messages: 0, applied: 0, rejected: 0, applyMs: 0, started: Date.now() };

  /** After the transaction committed: dead letters, then the Kafka offsets, then metrics. */
  async function finishBatch(batch: InFlight, done: NonNullable<Awaited<ReturnType<typeof applyWithRetry>>>) {
    const { messages, decoded } = batch;
    const { result, applyMs, committedAt } = done;
    // One dead letter per refused message, whichever stage refused which of its positions.
    const letters = deadLetters(messages, [
      ...decoded.rejects,
      ...sqlRejects(decoded, result.rejected_seq, result.rejected_reason),
    ]);
    await sendToDlq(producer, cfg.kafkaDlqTopic, letters);
    metrics.deadLetters.inc(letters.length);
    try {
      consumer.commitBatch(messages);
    } catch (error) {
      // Typically a rebalance took these partitions away meanwhile: their next owner re-reads the batch, and
      // applying it again changes nothing. Not a reason to stop.
      log.warn("offset commit failed; the batch will be redelivered", { error: String(error) });
    }

    const rejectedSeqs = new Set(result.rejected_seq);
    // The newest fix of each message is the phone's position when it sent: what the customer's map can show.
    const newestPerMessage = new Map<number, number>();
    for (const row of decoded.rows) {
      if (rejectedSeqs.has(row.seq)) continue;
      metrics.freshnessFromDevice.observe(Math.max(0, committedAt - row.recordedMs) / 1000);
      metrics.freshnessFromBridge.observe(Math.max(0, committedAt - row.receivedMs) / 1000);
      newestPerMessage.set(row.message, Math.max(newestPerMessage.get(row.message) ?? 0, row.recordedMs));
    }
    for (const newest of newestPerMessage.values()) {
      metrics.freshnessFromSend.observe(Math.max(0, committedAt - newest) / 1000);
    }
    metrics.batchSize.observe(messages.length);
    metrics.applySeconds.observe(applyMs / 1000);
    metrics.positionsIn.inc(decoded.rows.length + decoded.rejects.length);
    metrics.positionsApplied.inc(result.applied);
    metrics.transitions.inc(result.transitions);
    for (const r of decoded.rejects) metrics.positionsRejected.inc({ reason: r.reason });
    for (const reason of result.rejected_reason) metrics.positionsRejected.inc({ reason });
    if (result.duplicate > 0) metrics.positionsRejected.inc({ reason: "duplicate" }, result.duplicate);

    window.batches++;
    window.messages += messages.length;
    window.applied += result.applied;
    window.rejected += decoded.rejects.length + result.rejected_seq.length + result.duplicate;
    window.applyMs += applyMs;
    if (Date.now() - window.started >= 10_000) {
      const seconds = (Date.now() - window.started) / 1000;
      log.info("progress", {
        batches: window.batches,
        messages: window.messages,
        applied: window.applied,
        rejected: window.rejected,
        appliedPerSecond: Math.round(window.applied / seconds),
        avgApplyMs: Math.round(window.applyMs / window.batches),
      });
      window = { batches: 0, messages: 0, applied: 0, rejected: 0, applyMs: 0, started: Date.now() };
    }
  }

  /** While a batch is held (the database away): a line when the hold starts, then one every 10 s. */
  function holdReport() {
    let reportedAt = 0;
    return (heldMs: number) => {
      if (reportedAt > 0 && Date.now() - reportedAt < 10_000) return;
      reportedAt = Date.now();
      log.warn("holding the batch: partitions paused, still polling to stay in the group", { heldMs });
    };
  }

  // Two stages overlap: while PostgreSQL applies batch N, this process fetches and decodes batch N+1, in chunks, so
  // that batch N's transactions get their next command without waiting for the whole decode. Batches are still
  // applied, dead-lettered and committed strictly one after the other, in offset order.
  type InFlight = { messages: ConsumedMessage[]; decoded: DecodedBatch; applying: ReturnType<typeof applyWithRetry> };
  let inFlight: InFlight | undefined;
  while (!stopping) {
    const messages = await consumer.nextBatch(cfg.batchMaxMessages, cfg.batchMaxWaitMs);
    const decoded =
      messages.length > 0
        ? await decodeBatchYielding(messages, { nowMs: Date.now(), h3Resolution: cfg.h3Resolution })
        : undefined;
    if (inFlight) {
      const done = await consumer.holdWhile(inFlight.applying, holdReport());
      if (!done) break; // stopping while the database is down: leave the batch uncommitted for the next owner
      await finishBatch(inFlight, done);
      inFlight = undefined;
    }
    if (decoded) inFlight = { messages, decoded, applying: applyWithRetry(decoded.rows) };
  }
  if (inFlight) {
    const done = await inFlight.applying;
    if (done) await finishBatch(inFlight, done);
  }

  upkeep.stop();
  log.info("stopping");
  await consumer.disconnect();
  await producer.disconnect();
  await sql.end({ timeout: 5 });
  server.close();
  process.exit(0);
}

if (import.meta.main || process.argv[1]?.endsWith("positions.js")) {
  main().catch((err) => {
    log.error("fatal", { error: String(err) });
    process.exit(exitCodeFor(err));
  });
}
