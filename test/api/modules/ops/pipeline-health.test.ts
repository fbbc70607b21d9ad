// The health panel's arithmetic over real Prometheus text (a worker's own registry), and its reads of real endpoints.
import { afterAll, describe, expect, test } from "bun:test";
import { createPipelineHealth, histogramQuantile, readSnapshot } from "../../../../api/modules/ops/pipeline-health.ts";
import { createMetrics, serveMetrics } from "../../../../workers/metrics.ts";

const worker = createMetrics("positions");
const bridge = createMetrics("bridge");
const servers: { close(): void }[] = [];
afterAll(() => servers.forEach((s) => s.close()));

describe("readSnapshot", () => {
  test("sums the processes' counters and buckets, and keeps rejections by reason", async () => {
    worker.positionsApplied.inc(120);
    worker.consumerLag.set(7);
    worker.positionsRejected.inc({ reason: "unknown_driver" }, 3);
    bridge.positionsRejected.inc({ reason: "malformed_json" }, 2);
    bridge.positionsRejected.inc({ reason: "unknown_driver" }, 1);
    for (const seconds of [0.04, 0.3, 0.3, 2.5]) worker.freshnessFromDevice.observe(seconds);
    const snapshot = readSnapshot([await worker.registry.metrics(), await bridge.registry.metrics()]);
    expect(snapshot.positionsApplied).toBe(120);
    expect(snapshot.consumerLag).toBe(7);
    expect(snapshot.rejectedByReason).toEqual({ unknown_driver: 4, malformed_json: 2 });
    expect(snapshot.freshnessBuckets.get(0.05)).toBe(1);
    expect(snapshot.freshnessBuckets.get(0.3)).toBe(3);
    expect(snapshot.freshnessBuckets.get(Number.POSITIVE_INFINITY)).toBe(4);
  });
});

describe("histogramQuantile (Prometheus's interpolation)", () => {
  const cumulative = (pairs: [number, number][]) => new Map(pairs);
  test.each([
    [0.5, [[1, 5], [2, 10], [Infinity, 10]], 1],
    [0.75, [[1, 5], [2, 10], [Infinity, 10]], 1.5],
    [0.99, [[1, 0], [2, 100], [Infinity, 100]], 1.99],
    [0.99, [[1, 5], [2, 5], [Infinity, 10]], 2], // in +Inf: the highest finite bound
  ] as [number, [number, number][], number][])("q=%p over %p is %p", (q, pairs, expected) => {
    expect(histogramQuantile(q, cumulative(pairs))!).toBeCloseTo(expected, 9);
  });
  test("no observations: null", () => {
    expect(histogramQuantile(0.99, cumulative([[1, 0], [Infinity, 0]]))).toBeNull();
    expect(histogramQuantile(0.99, new Map())).toBeNull();
  });
});

describe("createPipelineHealth", () => {
  test("reads real endpoints, gives rates from the second read on, and reports a source that is down", async () => {
    const server = await serveMetrics(worker.registry, 0);
    servers.push(server);
    const down = "http://127.0.0.1:9/metrics"; // discard port: nothing listens
    const health = createPipelineHealth({ urls: [`http://127.0.0.1:${server.port}/metrics`, down], minIntervalMs: 0 });
    const first = await health.current();
    expect(first.sources.map((s) => s.up)).toEqual([true, false]);
    expect(first.positions_applied_total).toBe(120);
    expect(first.positions_per_second).toBeNull();
    worker.positionsApplied.inc(50);
    const second = await health.current();
    expect(second.positions_applied_total).toBe(170);
    expect(second.positions_per_second).toBeGreaterThan(0);
    expect(second.dlq_by_reason).toEqual([{ reason: "unknown_driver", total: 3, per_second: 0 }]);
  });

  test("callers within the interval share one read", async () => {
    const health = createPipelineHealth({ urls: [], minIntervalMs: 60_000 });
    const [a, b] = await Promise.all([health.current(), health.current()]);
    expect(a).toBe(b);
  });
});
