/** The mode publisher's Prometheus metrics (served like the other workers', workers/metrics.ts's serveMetrics). */
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

export function createModeMetrics() {
  const registry = new Registry();
  registry.setDefaultLabels({ process: "modes" });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    notices: new Counter({
      name: "mode_notices_total",
      help: "driver_mode notices received from the database (one per driver whose reporting mode changed)",
      registers: [registry],
    }),
    published: new Counter({
      name: "mode_published_total",
      help: "Retained mode commands the broker acknowledged, by source: notice, or reconcile (a difference found)",
      labelNames: ["source"],
      registers: [registry],
    }),
    failed: new Counter({
      name: "mode_publish_failed_total",
      help: "Mode commands the broker refused or that failed to go out (a reconciliation retries them)",
      registers: [registry],
    }),
    republished: new Counter({
      name: "mode_republished_total",
      help: "Recent commands published again because the broker connection came back (a restarted broker may have lost them)",
      registers: [registry],
    }),
    reconciled: new Counter({
      name: "mode_reconciled_total",
      help: "Drivers whose published mode differed from their state's and were published by a reconciliation",
      registers: [registry],
    }),
    reconcileRuns: new Counter({
      name: "mode_reconcile_runs_total",
      help: "Reconciliations run, by reason: start, listen_reconnected, notices_skipped, retry",
      labelNames: ["reason"],
      registers: [registry],
    }),
    recordFailures: new Counter({
      name: "mode_record_failures_total",
      help: "Published batches whose record in driver_mode_published failed (the next reconciliation sends them again)",
      registers: [registry],
    }),
    pending: new Gauge({
      name: "mode_pending_drivers",
      help: "Drivers whose mode change is waiting to be published",
      registers: [registry],
    }),
    noticesSkipped: new Gauge({
      name: "db_driver_mode_notices_skipped",
      help:
        "Mode notices the database skipped because its notification queue was over tracking.notify_queue_limit, since " +
        "the database was created (driver_mode_notice_status(), migration 0013); growth starts a reconciliation",
      registers: [registry],
    }),
    notifyQueueUsage: new Gauge({
      name: "db_notify_queue_usage",
      help: "PostgreSQL's LISTEN/NOTIFY queue fill, 0..1 (pg_notification_queue_usage())",
      registers: [registry],
    }),
  };
}

export type ModeMetrics = ReturnType<typeof createModeMetrics>;
