// The short chaos case CI runs (bench/chaos.ts is the full one): QoS 1 phones with outboxes, two bridges and two
// workers under their supervisors; a position worker SIGKILLed mid-stream and Mosquitto restarted. Nothing the
// phones saw acknowledged may be lost, applied twice, or both applied and dead-lettered.
import { expect, test } from "bun:test";
import { runChaos } from "../../bench/chaos/run.ts";

test("a worker SIGKILL and a Mosquitto restart lose no acknowledged position", async () => {
  const report = await runChaos({
    run: `ci${process.pid}${Date.now() % 1e6}`,
    phones: 200,
    rate: 200,
    minPositions: 10_000,
    faults: ["worker-sigkill", "mosquitto-restart"],
    cutSeconds: 0,
    maxRssMb: { bridge: 400, positions: 800 },
    patienceMs: 240_000,
    log: (line) => console.error(`[chaos] ${line}`),
  });
  const a = report.accounting;
  expect(report.faults.map((f) => [f.fault, f.recoveryS !== null])).toEqual([
    ["worker-sigkill", true],
    ["mosquitto-restart", true],
  ]);
  expect(report.phonesDrained).toBe(true);
  expect(a.acknowledged).toBeGreaterThanOrEqual(10_000);
  expect(a.acknowledged).toBe(a.sent);
  expect({ lost: a.lost, both: a.appliedAndDeadLettered, neverSent: a.neverSent }).toEqual({ lost: 0, both: 0, neverSent: 0 });
  expect(a.applied + a.deadLettered).toBe(a.acknowledged);
  expect(a.stateMismatches).toBe(0);
  expect(a.duplicateTransitions).toBe(0);
  expect(report.finalLag).toBe(0);
  expect(report.overMemoryBound).toEqual([]);
  expect(report.servicesLost).toEqual([]);
  expect(report.ok).toBe(true);
}, 900_000);
