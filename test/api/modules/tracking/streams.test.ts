/** The live-stream ceiling as pure functions (a real server: live-streams-server.test.ts; the slow-client rule: sse-sink.test.ts). */
import { describe, expect, test } from "bun:test";
import {
  createLiveStreamGate,
  descriptorReserve,
  liveStreamCeiling,
  openFileLimit,
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

  test("take and free (the live socket server's, no closure per slot) share the same count and max", () => {
    const gate = createLiveStreamGate(2);
    const release = gate.acquire()!;
    expect(gate.take()).toBe(true);
    expect(gate.take()).toBe(false);
    expect(gate.acquire()).toBeUndefined();
    expect([gate.open, gate.refused]).toEqual([2, 2]);
    const { free } = gate; // passed around on its own, as live-socket.ts does
    free("client");
    release("ended");
    expect(gate.open).toBe(0);
    expect(gate.take()).toBe(true);
    free(); // a slot that never became a stream: freed, not counted as closed
    expect(gate.open).toBe(0);
    expect(gate.closed).toEqual({ ended: 1, client: 1, slow_client: 0, shutdown: 0 });
  });
});
