/**
 * The shape of a `bench:e2e` result (bench/results/e2e-*.json, `results[]`): written by bench/e2e.ts, read by
 * bench/e2e-compare.ts.
 */
import type { DatabaseWindow } from "./steady-state.ts";

export interface RateResult {
  offeredRate: number;
  /** Fleet mode: how the offered rate was made (drivers, fixes per message, seconds between messages per group). */
  fleet?: { group: string; drivers: number; fixesPerMessage: number; messageEveryS: number }[];
  sentRate: number;
  /** MQTT messages per second the broker acknowledged to the fleet. */
  messageRate: number;
  /** CPU of the server side: every watched process but the benchmark and its simulated fleet. */
  serverCpuPercent: number;
  appliedRate: number;
  freshnessDevice: { p50: number; p95: number; p99: number };
  freshnessSend: { p50: number; p95: number; p99: number };
  freshnessBridge: { p50: number; p95: number; p99: number };
  /** The worker's apply of one batch (COPY, apply_position_batch, commit), from its batch_apply_seconds histogram. */
  applySeconds?: { p50: number; p95: number; p99: number };
  lagOverTime: number[];
  processes: { name: string; cpuPercent: number; maxRssMb: number }[];
  /** With --window-s: the run window by window (a sustained run's steady state). */
  windows?: WindowResult[];
  /**
   * With --dispatch-orders-per-s: the API's dispatch beside ingest (bench/dispatch/beside-ingest.ts), its own process
   * ("dispatch (API)" in processes, counted in the server's CPU; its database backends in "postgres (bench db)").
   */
  dispatch?: {
    ordersPerS: number;
    reads: { ok: number; failed: number; drivers: number };
    lastReadMs: number | undefined;
    /** byIndex / byExactSearch in the files of 2026-11-30 before 18:30 UTC; assigned (either way) since. */
    orders: {
      placed: number; assigned?: number; byIndex?: number; byExactSearch?: number; refused: number;
      /** The first refusal's message, so a refused order is never only a count. */
      firstRefusal?: string;
    };
  };
}
export interface WindowResult {
  /** Seconds since the measurement started, at the window's end. */
  endS: number;
  appliedRate: number;
  lagMax: number;
  lagEnd: number;
  freshnessSend: { p50: number; p99: number };
  freshnessDevice: { p50: number; p99: number };
  database: DatabaseWindow;
  processes: { name: string; cpuPercent: number; rssMb: number }[];
}
