/** The live stream's body rules with a fake direct controller (a real server: live.test.ts, "over real sockets"). */
import { describe, expect, test } from "bun:test";
import { createSseSinkCore, type DirectController, type SinkClose } from "../../../../api/modules/tracking/sse-sink.ts";
import { SLOW_CLIENT_HEARTBEATS } from "../../../../api/modules/tracking/streams.ts";

const PRE = "retry: 3000\n\n";
const HB = ": heartbeat\n\n";

/** A client whose socket takes writes at once until `stall()`; then each write waits for `drain()`. */
function fakeClient() {
  const writes: string[] = [];
  let stalled = false;
  let waiting: (() => void)[] = [];
  let broken = false;
  let closedByServer = false;
  const controller: DirectController = {
    write(text) {
      if (broken) throw new Error("socket closed");
      writes.push(text);
      if (!stalled) return text.length;
      return new Promise<number>((resolve) => waiting.push(() => resolve(text.length)));
    },
    flush: () => 0,
    close: () => void (closedByServer = true),
  };
  return {
    controller,
    writes,
    stall: () => void (stalled = true),
    /** The client reads again: what was written is taken (callbacks run), and later writes go straight through. */
    async drain() {
      stalled = false;
      const now = waiting;
      waiting = [];
      for (const resolve of now) resolve();
      await Bun.sleep(0);
    },
    break: () => void (broken = true),
    closed: () => closedByServer,
  };
}

function sinkWith(heartbeats?: number) {
  const closed: SinkClose[] = [];
  const sink = createSseSinkCore({ preamble: PRE, heartbeats, onClose: (reason) => closed.push(reason) });
  const client = fakeClient();
  return { sink, client, closed };
}

/** How `done` (what pull() returns) settled, or "open". */
async function outcome(done: Promise<void>) {
  return Promise.race([
    done.then(
      () => "closed",
      (reason) => ({ reset: reason }),
    ),
    Bun.sleep(5).then(() => "open"),
  ]);
}

describe("the live stream's body", () => {
  test("before the server pulls, events wait as the newest of each kind; the first write carries them after the preamble", async () => {
    const { sink, client } = sinkWith();
    sink.send("T1", "track");
    sink.send("P1", "position");
    sink.send("P2", "position");
    const done = sink.attach(client.controller);
    expect(client.writes).toEqual([`${PRE}T1P2`]);
    expect(await outcome(done)).toBe("open");
  });

  test("a client that keeps up gets every event and heartbeat as it happens", () => {
    const { sink, client, closed } = sinkWith();
    sink.attach(client.controller);
    sink.send("T1", "track");
    sink.send("P1", "position");
    sink.beat();
    sink.send("P2", "position");
    for (let i = 0; i < 5; i++) sink.beat();
    expect(client.writes).toEqual([PRE, "T1", "P1", HB, "P2", HB, HB, HB, HB, HB]);
    expect(closed).toEqual([]);
  });

  // Each row: what is sent while the client is behind, and the one write it gets when it catches up.
  const behindRows: [string, [string, "track" | "position"][], string | undefined][] = [
    ["positions: only the newest waits", [["P1", "position"], ["P2", "position"], ["P3", "position"]], "P3"],
    ["a track replaces the positions before it", [["P1", "position"], ["T1", "track"]], "T1"],
    ["a position after a track waits with it", [["T1", "track"], ["P1", "position"], ["P2", "position"]], "T1P2"],
    ["a newer track replaces the older", [["T1", "track"], ["P1", "position"], ["T2", "track"]], "T2"],
    ["nothing sent: nothing written", [], undefined],
  ];
  for (const [name, sends, caughtUpWith] of behindRows) {
    test(`behind, ${name}`, async () => {
      const { sink, client } = sinkWith();
      sink.attach(client.controller);
      client.stall();
      sink.send("T0", "track"); // written, not taken
      for (const [text, kind] of sends) sink.send(text, kind);
      expect(client.writes).toEqual([PRE, "T0"]);
      await client.drain();
      expect(client.writes).toEqual(caughtUpWith ? [PRE, "T0", caughtUpWith] : [PRE, "T0"]);
    });
  }

  test(`a client behind for ${SLOW_CLIENT_HEARTBEATS} heartbeats in a row is dropped: the connection is reset`, async () => {
    const { sink, client, closed } = sinkWith();
    const done = sink.attach(client.controller);
    client.stall();
    sink.send("P1", "position");
    for (let i = 1; i < SLOW_CLIENT_HEARTBEATS; i++) sink.beat();
    expect(closed).toEqual([]);
    sink.beat();
    expect(closed).toEqual(["slow_client"]);
    expect(await outcome(done)).toEqual({ reset: undefined });
    expect(client.closed()).toBe(false); // reset, not closed: what waits is discarded
    // Nothing more is written to it, even if its socket takes the last write later.
    sink.send("P2", "position");
    sink.beat();
    await client.drain();
    expect(client.writes).toEqual([PRE, "P1"]);
    expect(closed).toEqual(["slow_client"]);
  });

  test("a client that catches up between heartbeats starts counting again", async () => {
    const { sink, client, closed } = sinkWith(2);
    sink.attach(client.controller);
    for (let round = 0; round < 3; round++) {
      client.stall();
      sink.send(`P${round}`, "position");
      sink.beat(); // behind: counted, not written
      await client.drain();
    }
    expect(closed).toEqual([]);
    expect(client.writes).toEqual([PRE, "P0", "P1", "P2"]);
  });

  test("a server that never pulls counts as a client behind", async () => {
    const { sink, closed } = sinkWith(2);
    sink.send("T1", "track");
    sink.beat();
    sink.beat();
    expect(closed).toEqual(["slow_client"]);
  });

  test("the end is written even to a client behind, after what waits, and closes the stream", async () => {
    const { sink, client, closed } = sinkWith();
    const done = sink.attach(client.controller);
    client.stall();
    sink.send("P1", "position");
    sink.send("P2", "position");
    sink.end("E");
    expect(client.writes).toEqual([PRE, "P1", "P2E"]);
    expect(await outcome(done)).toBe("closed");
    sink.send("P3", "position");
    sink.beat();
    expect(client.writes).toEqual([PRE, "P1", "P2E"]);
    expect(closed).toEqual([]); // the caller knows why it ended
  });

  test("an end before the server pulls is written when it does, then the stream closes", async () => {
    const { sink, client } = sinkWith();
    sink.send("T1", "track");
    sink.end("E");
    const done = sink.attach(client.controller);
    expect(client.writes).toEqual([`${PRE}T1E`]);
    expect(await outcome(done)).toBe("closed");
    expect(client.closed()).toBe(true);
  });

  test("a client that goes away (a failed write, or the server's cancel) closes it as the client's doing", async () => {
    const failed = sinkWith();
    const done = failed.sink.attach(failed.client.controller);
    failed.client.break();
    failed.sink.send("P1", "position");
    expect(failed.closed).toEqual(["client"]);
    expect(await outcome(done)).toBe("closed");

    const cancelled = sinkWith();
    cancelled.sink.attach(cancelled.client.controller);
    cancelled.sink.cancel();
    cancelled.sink.cancel();
    expect(cancelled.closed).toEqual(["client"]);
  });

  test("a reader's later pull gets the same stream, not a second preamble", async () => {
    const { sink, client } = sinkWith();
    const first = sink.attach(client.controller);
    const again = sink.attach(client.controller);
    expect(again).toBe(first);
    expect(client.writes).toEqual([PRE]);
  });
});
