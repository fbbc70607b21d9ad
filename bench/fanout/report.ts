/** bench:fanout's per-minute table and its plot (Vega-Lite through bench/support/plot.ts). */
import { writePlot } from "../support/plot.ts";

export interface MinuteRow {
  minute: number;
  streams: number;
  refused: number;
  reconnects: number;
  apiCpuPercent: number;
  apiRssMb: number;
  /** API RSS over its RSS before any stream, per open stream. */
  apiBytesPerStream: number;
  clientCpuPercent: number;
  clientRssMb: number;
  /** `position` events received per second, all streams together. */
  eventsPerSecond: number;
  tracksPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencySamples: number;
  /** published_at (the database's notice, just before the commit) -> client receipt: the push latency. */
  pushP50Ms: number;
  pushP99Ms: number;
  pushSamples: number;
  /** The position worker's newest fix of a message (the phone's send) -> commit over the same minute. */
  sendCommitP50Ms: number;
  sendCommitP99Ms: number;
  /** The position worker's device -> commit over the same minute. */
  commitP50Ms: number;
  commitP99Ms: number;
  appliedPerSecond: number;
  noticesSkipped: number;
  /**
   * Most streams at once, over the minute's samples, starved: no event for longer than the starvation limit though a
   * newer position of their driver was committed (bench/fanout/starvation.ts). Before 2026-12-01 evening: every quiet
   * stream, whatever the reason.
   */
  starvedMax: number;
  /** Most streams at once with no event for longer than the limit because nothing newer of their driver was applied. */
  waitingOnIngestMax?: number;
  load: number[];
}

export function printTable(params: Record<string, unknown>, rows: readonly MinuteRow[]): void {
  console.log(`\n${JSON.stringify(params)}`);
  console.log(
    "min  streams  api cpu%  api MB  B/stream  events/s  commit→client p50/p99 ms  fix→client p50/p99 ms  send→commit p50/p99 ms  applied/s  starved  ingest-quiet  refused  reconn  load",
  );
  for (const r of rows) {
    console.log(
      [
        String(r.minute).padStart(3),
        String(r.streams).padStart(8),
        String(r.apiCpuPercent).padStart(9),
        String(r.apiRssMb).padStart(7),
        String(r.apiBytesPerStream).padStart(9),
        String(r.eventsPerSecond).padStart(9),
        `${r.pushP50Ms}/${r.pushP99Ms}`.padStart(25),
        `${r.latencyP50Ms}/${r.latencyP99Ms}`.padStart(22),
        `${r.sendCommitP50Ms}/${r.sendCommitP99Ms}`.padStart(23),
        String(r.appliedPerSecond).padStart(10),
        String(r.starvedMax).padStart(8),
        String(r.waitingOnIngestMax ?? "-").padStart(13),
        String(r.refused).padStart(8),
        String(r.reconnects).padStart(7),
        `  ${r.load.join(" ")}`,
      ].join(" "),
    );
  }
}

/** Latency (published -> client, fix -> client and send -> commit, p50 and p99) and events/s per minute, in two panels. */
export async function writeFanoutPlot(file: string, rows: readonly MinuteRow[], streams: number): Promise<string> {
  const latency = rows.flatMap((r) => [
    { minute: r.minute, series: "commit→client p50 (published_at)", ms: r.pushP50Ms },
    { minute: r.minute, series: "commit→client p99 (published_at)", ms: r.pushP99Ms },
    { minute: r.minute, series: "fix→client p50", ms: r.latencyP50Ms },
    { minute: r.minute, series: "fix→client p99", ms: r.latencyP99Ms },
    { minute: r.minute, series: "send→commit p50 (worker)", ms: r.sendCommitP50Ms },
    { minute: r.minute, series: "send→commit p99 (worker)", ms: r.sendCommitP99Ms },
  ]);
  const load = rows.flatMap((r) => [
    { minute: r.minute, series: "events/s received", value: r.eventsPerSecond },
    { minute: r.minute, series: "streams held", value: r.streams },
    { minute: r.minute, series: "API CPU %", value: r.apiCpuPercent },
  ]);
  return writePlot(file, {
    title: `bench:fanout, ${streams} live streams`,
    vconcat: [
      {
        width: 520, height: 200, data: { values: latency }, mark: { type: "line", point: true },
        encoding: {
          x: { field: "minute", type: "quantitative", title: "minute" },
          y: { field: "ms", type: "quantitative", title: "latency (ms)" },
          color: { field: "series", type: "nominal" },
        },
      },
      {
        width: 520, height: 160, data: { values: load }, mark: { type: "line", point: true },
        encoding: {
          x: { field: "minute", type: "quantitative", title: "minute" },
          y: { field: "value", type: "quantitative", title: "count / %" },
          color: { field: "series", type: "nominal" },
        },
      },
    ],
  });
}
