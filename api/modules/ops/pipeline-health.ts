/**
 * The ingest pipeline's health for the operations page, read from the bridge's and the position worker's own
 * Prometheus endpoints (OPS_METRICS_URLS): what /metrics says, summed over the processes, plus rates between two
 * reads. One read at a time however many pages ask: callers within `minIntervalMs` of the last read share it.
 */
import parsePrometheusTextFormat, { type ParsedFamily } from "parse-prometheus-text-format";

export interface MetricsSnapshot {
  /** positions_applied_total summed over the processes. */
  positionsApplied: number;
  /** kafka_consumer_lag_messages summed (the worker reports its assigned partitions'). */
  consumerLag: number;
  /** position_freshness_from_device_seconds: cumulative count per upper bound, summed over the processes. */
  freshnessBuckets: Map<number, number>;
  /** positions_rejected_total by reason (each refused position is dead-lettered with its message). */
  rejectedByReason: Record<string, number>;
}

export interface SourceStatus {
  url: string;
  up: boolean;
  error?: string;
}

export interface PipelineHealth {
  at: string;
  sources: SourceStatus[];
  positions_applied_total: number;
  positions_per_second: number | null;
  consumer_lag_messages: number;
  /** 99th percentile of device-to-database freshness since the worker started (histogram_quantile over buckets). */
  freshness_p99_seconds: number | null;
  dlq_by_reason: { reason: string; total: number; per_second: number | null }[];
}

const sum = (family: ParsedFamily | undefined) =>
  (family?.metrics ?? []).reduce((total, sample) => total + Number(sample.value ?? 0), 0);

/** One process's /metrics text, reduced to what the panel shows. */
export function readSnapshot(texts: readonly string[]): MetricsSnapshot {
  const snapshot: MetricsSnapshot = { positionsApplied: 0, consumerLag: 0, freshnessBuckets: new Map(), rejectedByReason: {} };
  for (const text of texts) {
    const families = new Map(parsePrometheusTextFormat(text).map((family) => [family.name, family]));
    snapshot.positionsApplied += sum(families.get("positions_applied_total"));
    snapshot.consumerLag += sum(families.get("kafka_consumer_lag_messages"));
    for (const sample of families.get("positions_rejected_total")?.metrics ?? []) {
      const reason = sample.labels?.reason ?? "unknown";
      snapshot.rejectedByReason[reason] = (snapshot.rejectedByReason[reason] ?? 0) + Number(sample.value ?? 0);
    }
    for (const sample of families.get("position_freshness_from_device_seconds")?.metrics ?? []) {
      for (const [le, count] of Object.entries(sample.buckets ?? {})) {
        const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
        snapshot.freshnessBuckets.set(bound, (snapshot.freshnessBuckets.get(bound) ?? 0) + Number(count));
      }
    }
  }
  return snapshot;
}

/**
 * Prometheus's histogram_quantile: linear interpolation inside the bucket holding the rank; the highest finite bound
 * when the rank falls in +Inf; null without observations.
 */
export function histogramQuantile(q: number, cumulative: ReadonlyMap<number, number>): number | null {
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  const total = cumulative.get(Number.POSITIVE_INFINITY) ?? 0;
  if (bounds.length === 0 || total === 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bound of bounds) {
    const count = cumulative.get(bound)!;
    if (count >= rank) {
      if (bound === Number.POSITIVE_INFINITY) return bounds.length > 1 ? bounds[bounds.length - 2]! : null;
      if (count === lowerCount) return bound;
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return null;
}

export interface PipelineHealthOptions {
  urls: readonly string[];
  /** Reads closer together than this share one (the page polls every second). */
  minIntervalMs?: number;
  fetchTimeoutMs?: number;
}

export function createPipelineHealth(options: PipelineHealthOptions) {
  const minIntervalMs = options.minIntervalMs ?? 900;
  const fetchTimeoutMs = options.fetchTimeoutMs ?? 1_000;
  let previous: { at: number; snapshot: MetricsSnapshot } | undefined;
  let latest: { at: number; health: Promise<PipelineHealth> } | undefined;

  async function scrape(url: string): Promise<{ status: SourceStatus; text?: string }> {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(fetchTimeoutMs) });
      if (!res.ok) return { status: { url, up: false, error: `HTTP ${res.status}` } };
      return { status: { url, up: true }, text: await res.text() };
    } catch (error) {
      return { status: { url, up: false, error: (error as Error).message } };
    }
  }

  async function read(now: number): Promise<PipelineHealth> {
    const scraped = await Promise.all(options.urls.map(scrape));
    const snapshot = readSnapshot(scraped.flatMap((s) => (s.text === undefined ? [] : [s.text])));
    const seconds = previous ? (now - previous.at) / 1000 : 0;
    const rate = (current: number, before: number | undefined) =>
      seconds > 0 && before !== undefined ? Math.max(0, current - before) / seconds : null;
    const before = previous?.snapshot;
    previous = { at: now, snapshot };
    return {
      at: new Date(now).toISOString(),
      sources: scraped.map((s) => s.status),
      positions_applied_total: snapshot.positionsApplied,
      positions_per_second: rate(snapshot.positionsApplied, before?.positionsApplied),
      consumer_lag_messages: snapshot.consumerLag,
      freshness_p99_seconds: histogramQuantile(0.99, snapshot.freshnessBuckets),
      dlq_by_reason: Object.entries(snapshot.rejectedByReason)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([reason, total]) => ({ reason, total, per_second: rate(total, before?.rejectedByReason[reason] ?? 0) })),
    };
  }

  return {
    current(): Promise<PipelineHealth> {
      const now = Date.now();
      if (!latest || now - latest.at >= minIntervalMs) latest = { at: now, health: read(now) };
      return latest.health;
    },
  };
}

export type PipelineHealthReader = ReturnType<typeof createPipelineHealth>;
