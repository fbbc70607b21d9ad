/** The live-stream ceiling and the slow-client rule as pure functions (a real server: live-streams-server.test.ts). */
import { describe, expect, test } from "bun:test";
import {
  createLiveStreamGate,
  createStallWatch,
  descriptorReserve,
  LIVE_QUEUE_MARK_BYTES,
  LIVE_QUEUE_MAX_BYTES,
  liveStreamCeiling,
  openFileLimit,
  SLOW_CLIENT_HEARTBEATS,
} from "../../../../api/modules/tracking/streams.ts";
import { AppError } from "../../../../lib/errors.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                40000                files
Max locked memory         8388608              8388608              bytes
`;

describe("the open-file limit", () => {
  test("is the soft limit of /proc/self/limits", () => {
    expect(openFileLimit(LIMITS)).toBe(20_000);
    expect(openFileLimit("Max open files            unlimited            unlimited            files")).toBeUndefined();
    expect(openFileLimit("")).toBeUndefined();
  });

  test("this process's own, on Linux", () => {
    if (process.platform !== "linux") return;
    const limit = openFileLimit();
    expect(limit).toBeGreaterThan(0);
  });
});

describe("the ceiling", () => {
  test("derived: the limit less a tenth of it, at least 256 kept", () => {
    expect(descriptorReserve(20_000)).toBe(2_000);
    expect(descriptorReserve(1_024)).toBe(256);
    expect(liveStreamCeiling(0, 20_000)).toBe(18_000);
    expect(liveStreamCeiling(0, 1_024)).toBe(768);
    expect(liveStreamCeiling(0, 200)).toBe(0); // a limit this small leaves nothing for streams
  });

  test("LIVE_STREAMS_MAX lowers it, and may not eat into the reserve", () => {
    expect(liveStreamCeiling(200, 20_000)).toBe(200);
    expect(liveStreamCeiling(18_000, 20_000)).toBe(18_000);
    let error: unknown;
    try {
      liveStreamCeiling(19_500, 20_000);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("CONFIG_INVALID");
    expect((error as AppError).message).toStartWith("LIVE_STREAMS_MAX: 19500 is more than 18000");
  });

  test("without a known limit: the configured value, else a conservative default", () => {
    expect(liveStreamCeiling(500, undefined)).toBe(500);
    expect(liveStreamCeiling(0, undefined)).toBe(8_192);
  });
});

describe("the gate", () => {
  test("refuses past its max, counts refusals and closes by reason, frees a slot once", () => {
    const gate = createLiveStreamGate(2);
    const a = gate.acquire()!;
    const b = gate.acquire()!;
    expect(gate.acquire()).toBeUndefined();
    expect(gate.acquire()).toBeUndefined();
    expect([gate.open, gate.refused]).toEqual([2, 2]);
    a("slow_client");
    a("client"); // a second release of the same slot changes nothing
    expect(gate.open).toBe(1);
    const c = gate.acquire()!;
    expect(gate.acquire()).toBeUndefined();
    b(); // never opened (e.g. 404): freed, not counted as closed
    c("ended");
    expect(gate.open).toBe(0);
    expect(gate.refused).toBe(3);
    expect(gate.closed).toEqual({ ended: 1, client: 0, slow_client: 1, shutdown: 0 });
  });
});

describe("the slow-client rule", () => {
  // desiredSize = mark - queued bytes: what a ReadableStream controller with a ByteLengthQueuingStrategy reports.
  const queued = (bytes: number) => LIVE_QUEUE_MARK_BYTES - bytes;

  // Each row: the queued bytes seen at successive heartbeats, and at which beat (1-based) the client is dropped.
  const rows: [string, number[], number | undefined][] = [
    ["a client that reads: the queue stays empty", [0, 0, 0, 0, 0], undefined],
    ["a queue at the mark is not over it", [LIVE_QUEUE_MARK_BYTES, LIVE_QUEUE_MARK_BYTES], undefined],
    ["over the mark once, then drained", [LIVE_QUEUE_MARK_BYTES + 1, 0, LIVE_QUEUE_MARK_BYTES + 1, 0], undefined],
    ["over the mark at consecutive beats", [0, LIVE_QUEUE_MARK_BYTES + 1, LIVE_QUEUE_MARK_BYTES + 500], 3],
    ["stuck from the start", [LIVE_QUEUE_MARK_BYTES + 10, LIVE_QUEUE_MARK_BYTES + 20, LIVE_QUEUE_MARK_BYTES + 30], 2],
  ];
  for (const [name, beats, droppedAt] of rows) {
    test(name, () => {
      const watch = createStallWatch();
      const verdicts = beats.map((bytes) => watch.beat(queued(bytes)));
      expect(verdicts.indexOf(true) + 1 || undefined).toBe(droppedAt);
    });
  }

  test(`dropped after ${SLOW_CLIENT_HEARTBEATS} stalled heartbeats by default; a closed stream is left alone`, () => {
    const watch = createStallWatch({ heartbeats: 3 });
    expect([watch.beat(-1), watch.beat(-1), watch.beat(null), watch.beat(-1)]).toEqual([false, false, false, true]);
  });

  test("a queue over the hard bound drops the client at the write, without waiting for heartbeats", () => {
    const watch = createStallWatch();
    expect(watch.wrote(queued(LIVE_QUEUE_MAX_BYTES))).toBe(false);
    expect(watch.wrote(queued(LIVE_QUEUE_MAX_BYTES + 1))).toBe(true);
    expect(watch.wrote(null)).toBe(false);
  });
});
