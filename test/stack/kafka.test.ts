// Proof that the real Kafka broker works with @confluentinc/kafka-javascript: keyed produce, batch consume by a
// consumer group, per-key order. The client runs on Node (its addon cannot run under Bun 1.4.5; see bin/stack).
import { expect, test } from "bun:test";
import { startNodeScript } from "../../tools/node-workers.ts";

test("10,000 keyed messages come back to a consumer group in batches, in order per key", async () => {
  const run = await startNodeScript(new URL("./kafka-roundtrip.node.ts", import.meta.url).pathname, {});
  const code = await run.proc.exited;
  expect(code).toBe(0);
  const line = run.output().trim().split("\n").find((l) => l.startsWith("{"));
  const result = JSON.parse(line!) as {
    received: number;
    keys: number;
    outOfOrder: number;
    keyMismatch: number;
    batchSizes: number[];
    lag: number;
  };
  expect(result.received).toBe(10_000);
  expect(result.keys).toBe(50);
  expect(result.outOfOrder).toBe(0);
  expect(result.keyMismatch).toBe(0);
  // Batches, not single messages: the consumer hands over thousands at a time.
  expect(Math.max(...result.batchSizes)).toBeGreaterThan(1_000);
  expect(result.lag).toBe(0);
});
