/**
 * The mode publisher's one loop: publishes each driver's reporting mode, retained at QoS 1, and records what the
 * broker acknowledged in the database, so a reconciliation knows what differs.
 *
 * Everything goes through one serial loop, which is what keeps a driver's retained message right:
 *   * notices are kept per driver (the newest wins) and published in rounds; a notice arriving while its driver's
 *     previous command is in flight waits for the next round, so the last command published is the newest;
 *   * a reconciliation reads one page of differences (driver_modes_to_publish) and publishes it as one round between
 *     notice rounds. A notice delivered after the page was read is published after it, and one delivered before was
 *     committed before, so the page already shows it (or something newer): the last word is always the newest state.
 * Reconciliation pages are rate-limited (MODES_RECONCILE_PER_SECOND) and pending notices go first between pages.
 *
 * A broker that crashed loses the retained messages it acknowledged since its last autosave (Mosquitto's
 * autosave_interval, 30 s), and the record says they were published, so no reconciliation would find them. The
 * publisher therefore remembers what it published in the last `rememberMs` and, when its connection comes back,
 * publishes those commands again (through the same loop: a newer notice still has the last word).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Sql } from "../../lib/db.ts";
import type { logger } from "../log.ts";
import { commandTopic, modeCommand, toModeChange, type ModeChange } from "./command.ts";
import type { ModeMetrics } from "./metrics.ts";

/** What the publisher needs of an MQTT client (mqtt.js's MqttClient has it). */
export interface RetainedPublisher {
  publishAsync(topic: string, message: string, options: { qos: 1; retain: true }): Promise<unknown>;
}

export type ReconcileReason = "start" | "listen_reconnected" | "notices_skipped" | "retry";

export interface ModePublisherOptions {
  sql: Sql;
  mqtt: RetainedPublisher;
  metrics: ModeMetrics;
  log: ReturnType<typeof logger>;
  topicPrefix?: string;
  pageSize: number;
  perSecond: number;
  /** First pause before a failed reconciliation or publish is retried; doubled up to 30 s. */
  retryDelayMs?: number;
  /** How long a published command is remembered for republishRecent (default 120 s: 4x the broker's autosave). */
  rememberMs?: number;
}

export interface ModePublisher {
  /** A change from a `driver_mode` notice. */
  notice(change: ModeChange): void;
  /** Asks for a reconciliation (several requests before it starts make one). */
  reconcile(reason: ReconcileReason): void;
  /**
   * The broker connection came back (perhaps a restarted broker that lost its newest retained messages): publishes
   * again each driver's command published in the last rememberMs, unless a newer one is waiting. Returns how many.
   */
  republishRecent(): number;
  /** Finishes the round in flight and stops. */
  stop(): Promise<void>;
}

const MAX_RETRY_MS = 30_000;

export function createModePublisher(options: ModePublisherOptions): ModePublisher {
  const { sql, mqtt, metrics, log, pageSize, perSecond } = options;
  const prefix = options.topicPrefix ?? "";
  const firstRetryMs = options.retryDelayMs ?? 1_000;
  let retryMs = firstRetryMs;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let pending = new Map<string, ModeChange>();
  const rememberMs = options.rememberMs ?? 120_000;
  /** Commands the broker acknowledged lately, per driver, oldest first (re-inserted when published again). */
  const recent = new Map<string, { change: ModeChange; at: number }>();
  const remember = (published: readonly ModeChange[]) => {
    const now = Date.now();
    for (const c of published) {
      recent.delete(c.driverId);
      recent.set(c.driverId, { change: c, at: now });
    }
    for (const [id, r] of recent) {
      if (r.at >= now - rememberMs) break;
      recent.delete(id);
    }
  };
  let wanted: ReconcileReason | undefined;
  let stopping = false;
  let wake: (() => void) | undefined;

  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  /** A retry of what failed, later (a reconciliation finds whatever is still unpublished). */
  const retryLater = () => {
    if (retryTimer || stopping) return;
    const delay = retryMs;
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      publisher.reconcile("retry");
    }, delay);
  };

  /** Publishes one round and records what the broker acknowledged. Returns how many were published. */
  async function publishRound(changes: ModeChange[], source: "notice" | "reconcile"): Promise<number> {
    const outcomes = await Promise.allSettled(
      changes.map((c) => mqtt.publishAsync(commandTopic(c.driverId, prefix), modeCommand(c), { qos: 1, retain: true })),
    );
    const published = changes.filter((_, i) => outcomes[i]!.status === "fulfilled");
    remember(published);
    const failed = outcomes.length - published.length;
    metrics.published.inc({ source }, published.length);
    if (failed > 0) {
      metrics.failed.inc(failed);
      const reason = (outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult).reason;
      log.warn("mode commands not published; a reconciliation will retry them", { failed, error: String(reason) });
      retryLater();
    }
    if (published.length > 0) {
      try {
        await sql`select record_driver_modes_published(${published.map((c) => c.driverId)}::uuid[],
          ${published.map((c) => c.mode)}::text[], ${published.map((c) => c.state)}::driver_status[])`;
      } catch (error) {
        // The broker has them; the record only says so. A reconciliation publishes them again: harmless.
        metrics.recordFailures.inc();
        log.warn("recording published modes failed", { drivers: published.length, error: String(error) });
        retryLater();
      }
    }
    return published.length;
  }

  async function flushNotices(): Promise<void> {
    while (pending.size > 0 && !stopping) {
      const round = [...pending.values()].slice(0, pageSize);
      for (const c of round) pending.delete(c.driverId);
      metrics.pending.set(pending.size);
      await publishRound(round, "notice");
    }
  }

  async function reconcilePass(reason: ReconcileReason): Promise<void> {
    metrics.reconcileRuns.inc({ reason });
    const started = Date.now();
    let after: string | null = null;
    let differences = 0;
    let published = 0;
    for (;;) {
      await flushNotices();
      if (stopping) return;
      const pageStarted = Date.now();
      const rows: { driver_id: string; mode: string; state: string; at: Date }[] = await sql`
        select driver_id::text, mode, state::text, at from driver_modes_to_publish(${after}, ${pageSize})`;
      if (rows.length === 0) break;
      const changes = rows.map(toModeChange).filter((c): c is ModeChange => c !== undefined);
      differences += rows.length;
      const sent = await publishRound(changes, "reconcile");
      published += sent;
      metrics.reconciled.inc(sent);
      after = rows.at(-1)!.driver_id;
      if (rows.length < pageSize) break;
      // At most perSecond commands a second: a page of pageSize takes at least pageSize / perSecond seconds.
      const pause = (rows.length / perSecond) * 1000 - (Date.now() - pageStarted);
      if (pause > 0) await sleep(pause);
    }
    log.info("reconciled", { reason, differences, published, ms: Date.now() - started });
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      if (pending.size > 0) {
        await flushNotices();
        continue;
      }
      if (wanted) {
        const reason = wanted;
        wanted = undefined;
        try {
          await reconcilePass(reason);
          retryMs = firstRetryMs;
        } catch (error) {
          log.warn("reconciliation failed; retrying", { reason, error: String(error), retryMs });
          retryLater();
        }
        continue;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  }

  const running = loop().catch((error: unknown) => {
    log.error("mode publisher loop failed", { error: String(error) });
    throw error;
  });

  const publisher: ModePublisher = {
    notice(change) {
      metrics.notices.inc();
      // Re-inserted so a driver's newest change keeps its place at the end of the round order.
      pending.delete(change.driverId);
      pending.set(change.driverId, change);
      metrics.pending.set(pending.size);
      poke();
    },
    reconcile(reason) {
      // The first reason of a burst names the run; "start" is never downgraded.
      if (!wanted || reason === "start") wanted = reason;
      poke();
    },
    republishRecent() {
      const cutoff = Date.now() - rememberMs;
      let count = 0;
      for (const [id, r] of recent) {
        if (r.at < cutoff || pending.has(id)) continue;
        pending.set(id, r.change);
        count++;
      }
      metrics.republished.inc(count);
      metrics.pending.set(pending.size);
      log.info("publishing recent commands again (the broker may have lost them)", { commands: count, withinMs: rememberMs });
      poke();
      return count;
    },
    async stop() {
      stopping = true;
      if (retryTimer) clearTimeout(retryTimer);
      poke();
      await running;
      pending = new Map();
    },
  };
  return publisher;
}
