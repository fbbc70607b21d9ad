/**
 * The position worker. Runs on Node (see bin/stack for why). Consumer group `position-workers`: takes large
 * batches from `driver-pos`, decodes and checks them, COPYs them into staging and runs the apply procedure in one
 * transaction, and commits the batch's Kafka offsets only after that transaction committed (at-least-once delivery;
 * the procedure is idempotent, so a redelivered batch changes nothing). Rejects go to `driver-pos-dlq`.
 *
 * Back-pressure: while the database refuses a batch, the worker retries that batch with backoff and consumes
 * nothing else, so memory stays at two batches (the one applying and the next one, decoded meanwhile). On SIGTERM it finishes the current batch (or abandons it uncommitted
 * if the database is down) and leaves the group.
 */
import type { RejectReason } from "../lib/errors.ts";
import { config } from "../lib/config.ts";
import { connectDatabase, sqlState } from "../lib/db.ts";
import { createBatchConsumer, createRecordProducer, sendToDlq, type ConsumedMessage, type RecordProducer } from "../lib/kafka.ts";
import { applyPositionBatch, emptyResult, mergeResults, splitByDriver, type ApplyResult } from "./apply-batch.ts";
import { decodeBatch, type DecodedBatch, type Reject } from "./decode-batch.ts";
import { createFixCache } from "./fix-cache.ts";
import { logger } from "./log.ts";
import { createMetrics, serveMetrics } from "./metrics.ts";

const log = logger("positions");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Worth retrying the same batch: the database is away, restarting, overloaded, or we lost a lock race. Anything
 * else (a value the database refuses, a bug) would fail the same way again, and is isolated instead (see below).
 */
function isTransient(error: unknown): boolean {
  const state = sqlState(error);
  if (state === undefined) return false;
  return (
    state.startsWith("08") || // connection exceptions
    ["40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "53200"].includes(state) ||
    // postgres.js and the socket name connection failures by errno-like codes
    ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "CONNECTION_CLOSED", "CONNECTION_ENDED",
      "CONNECTION_DESTROYED", "CONNECT_TIMEOUT"].includes(state)
  );
}

async function main() {
  const cfg = config();
  const metrics = createMetrics("positions");
  // One connection per parallel apply, and one for the sweep and housekeeping.
  const sql = connectDatabase(cfg.databaseUrl, { max: cfg.applyConnections + 1, application: "position-worker" });
  const producer = createRecordProducer(cfg.kafkaBootstrapServers, "position-worker-dlq");
  await producer.connect();
  const consumer = await createBatchConsumer({
    bootstrapServers: cfg.kafkaBootstrapServers,
    groupId: cfg.kafkaGroupId,
    topics: [cfg.kafkaTopic],
    clientId: `position-worker-${process.pid}`,
    onRebalance: (event, partitions) =>
      log.info(`partitions ${event}`, { partitions: partitions.map((p) => p.partition) }),
  });
  const fixes = createFixCache(300_000);
  const server = await serveMetrics(metrics.registry, cfg.metricsPort);
  log.info("started", { group: cfg.kafkaGroupId, topic: cfg.kafkaTopic, metricsPort: server.port });

  let stopping = false;
  process.on("SIGTERM", () => (stopping = true));
  process.on("SIGINT", () => (stopping = true));

  // OFFLINE_AFTER lives in tracking_settings from here on, so the sweep and assignment (called by the API) agree.
  await sql`update tracking_settings set offline_after_s = ${cfg.offlineAfterSeconds} where id = 1`;
  const maintenance = setInterval(() => {
    sql`select sweep_offline_drivers()`.catch(() => {});
  }, 5_000);
  const housekeeping = setInterval(() => {
    sql`select ensure_trail_partitions(now(), now() + interval '1 day'), drop_old_trail_partitions()`.catch(() => {});
  }, 3_600_000);
  const lagTimer = setInterval(() => {
    consumer
      .lag()
      .then((lag) => metrics.consumerLag.set([...lag.values()].reduce((a, b) => a + b, 0)))
      .catch(() => {});
  }, 2_000);

  /** Applies rows, retrying with backoff while the database is away; throws what a retry cannot fix. */
  async function applyTransientRetry(rows: DecodedBatch["rows"]): Promise<ApplyResult | undefined> {
    let backoff = 100;
    for (;;) {
      try {
        return await applyPositionBatch(sql, rows);
      } catch (error) {
        if (!isTransient(error)) throw error;
        metrics.retries.inc({ cause: sqlState(error) ?? "unknown" });
        log.warn("batch apply failed; retrying", { error: String(error), backoffMs: backoff });
        if (stopping) return undefined;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  /**
   * A batch the database refuses for its content (SQLSTATE class 22/23, say) must not stop the pipeline: halves
   * are applied separately until each refused position stands alone, and those go to the DLQ as
   * `rejected_by_database`. log2(batch) extra round trips, and only when it happens.
   */
  async function applyIsolating(rows: DecodedBatch["rows"], refused: number[]): Promise<ApplyResult | undefined> {
    try {
      return await applyTransientRetry(rows);
    } catch (error) {
      // Only content errors are isolated; a missing function or table is the deployment's fault: stop, commit nothing.
      const state = sqlState(error);
      const contentError = state === undefined || state.startsWith("22") || state.startsWith("23");
      if (!contentError || rows.length === 0) throw error;
      if (rows.length === 1) {
        log.warn("position refused by the database", { error: String(error), driver: rows[0]!.driverId });
        refused.push(rows[0]!.seq);
        return emptyResult();
      }
      const middle = Math.ceil(rows.length / 2);
      const first = await applyIsolating(rows.slice(0, middle), refused);
      if (!first) return undefined;
      const second = await applyIsolating(rows.slice(middle), refused);
      if (!second) return undefined;
      return mergeResults(first, second);
    }
  }

  /** Applies one batch; undefined if asked to stop while the database was away. */
  async function applyWithRetry(rows: DecodedBatch["rows"]) {
    const started = performance.now();
    const refused: number[] = [];
    const parts = await Promise.all(splitByDriver(rows, cfg.applyConnections).map((part) => applyIsolating(part, refused)));
    if (parts.some((part) => part === undefined)) return undefined;
    const result = (parts as ApplyResult[]).reduce(mergeResults);
    for (const seq of refused) {
      result.rejected_seq.push(seq);
      result.rejected_reason.push("rejected_by_database");
    }
    return { result, applyMs: performance.now() - started, committedAt: Date.now() };
  }

  let window = { batches: 0, messages: 0, applied: 0, rejected: 0, applyMs: 0, started: Date.now() };

  /** After the transaction committed: dead letters, then the Kafka offsets, then metrics. */
  async function finishBatch(batch: InFlight, done: NonNullable<Awaited<ReturnType<typeof applyWithRetry>>>) {
    const { messages, decoded } = batch;
    const { result, applyMs, committedAt } = done;
    const sqlRejects: Reject[] = result.rejected_seq.map((seq, i) => ({
      message: decoded.rows[seq]!.message,
      reason: result.rejected_reason[i] as RejectReason,
      detail: `driver ${decoded.rows[seq]!.driverId} at ${new Date(decoded.rows[seq]!.recordedMs).toISOString()}`,
    }));
    await sendRejects(producer, cfg.kafkaDlqTopic, messages, [...decoded.rejects, ...sqlRejects]);
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

  // Two stages overlap: while PostgreSQL applies batch N, this process fetches and decodes batch N+1. Batches are
  // still applied, dead-lettered and committed strictly one after the other, in offset order.
  type InFlight = { messages: ConsumedMessage[]; decoded: DecodedBatch; applying: ReturnType<typeof applyWithRetry> };
  let inFlight: InFlight | undefined;
  while (!stopping) {
    const messages = await consumer.nextBatch(cfg.batchMaxMessages, cfg.batchMaxWaitMs);
    const decoded =
      messages.length > 0
        ? decodeBatch(messages, fixes, { nowMs: Date.now(), h3Resolution: cfg.h3Resolution })
        : undefined;
    // The plausibility check of the next batch compares against these (SQL may still reject a few; that is fine
    // for a speed check).
    for (const row of decoded?.rows ?? []) fixes.remember(row.driverId, { lat: row.lat, lon: row.lon, tMs: row.recordedMs });
    if (inFlight) {
      const done = await inFlight.applying;
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

  clearInterval(maintenance);
  clearInterval(housekeeping);
  clearInterval(lagTimer);
  log.info("stopping");
  await consumer.disconnect();
  await producer.disconnect();
  await sql.end({ timeout: 5 });
  server.close();
  process.exit(0);
}

async function sendRejects(
  producer: RecordProducer,
  topic: string,
  messages: ConsumedMessage[],
  rejects: Reject[],
) {
  await sendToDlq(
    producer,
    topic,
    rejects.map((r) => ({
      key: messages[r.message]!.key?.toString() ?? null,
      value: messages[r.message]!.value ?? Buffer.alloc(0),
      reason: r.reason,
      source: `kafka:${messages[r.message]!.topic}/${messages[r.message]!.partition}@${messages[r.message]!.offset}`,
      detail: r.detail,
    })),
  );
}

if (import.meta.main || process.argv[1]?.endsWith("positions.js")) {
  main().catch((err) => {
    log.error("fatal", { error: String(err) });
    process.exit(1);
  });
}
