// Position trust in apply_position_batch (migration 0008) on real PostGIS, through the worker's own COPY path: fix to
// fix speed from the last accepted position, re-anchoring after a bogus one, and fixes dated after their receipt.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cellOf } from "../../lib/h3.ts";
import { DEFAULT_LIMITS, MAX_FUTURE_SKEW_AT_RECEIPT_MS } from "../../lib/position.ts";
import { applyPositionBatch } from "../../workers/apply-batch.ts";
import type { StagedPosition } from "../../workers/decode-batch.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
const NOW = Date.now();
const BASE = { lat: 40.75, lon: -73.99 };
const M_PER_DEG_LAT = 111_195;

/** A fix `secondsAgo`, `north` metres north of BASE; received a second after it unless `aheadOfReceipt` says how far
 * (in seconds) the phone's clock was ahead of the bridge's. */
interface Fix {
  ago: number;
  north: number;
  aheadOfReceipt?: number;
}
const fix = (ago: number, north: number, aheadOfReceipt?: number): Fix => ({ ago, north, aheadOfReceipt });

function staged(driverId: string, fixes: Fix[]): StagedPosition[] {
  return fixes.map((f, seq) => {
    const lat = BASE.lat + f.north / M_PER_DEG_LAT;
    const recordedMs = NOW - f.ago * 1000;
    return {
      seq, driverId, recordedMs, lat, lon: BASE.lon, h3: cellOf(lat, BASE.lon, 9), speedKmh: undefined,
      headingDeg: undefined, accuracyM: 5, batteryPct: undefined,
      receivedMs: f.aheadOfReceipt === undefined ? recordedMs + 1000 : recordedMs - f.aheadOfReceipt * 1000, message: 0,
    };
  });
}

async function newDriver(anchor?: Fix): Promise<string> {
  const [{ id }] = (await db.sql`insert into drivers (name) values ('trust') returning id`) as unknown as [{ id: string }];
  await db.sql`insert into driver_state (driver_id) values (${id})`;
  if (anchor) expect((await applyPositionBatch(db.sql, staged(id, [anchor]))).applied).toBe(1);
  return id;
}

const where = async (id: string) =>
  (await db.sql<{ north: number; ago: number; streak: number }[]>`
    select round((lat - ${BASE.lat}) * ${M_PER_DEG_LAT})::int north,
           round(extract(epoch from (${new Date(NOW)}::timestamptz - position_at)))::int ago,
           implausible_streak streak
    from driver_state where driver_id = ${id}`)[0]!;
const trailOf = async (id: string) =>
  (await db.sql<{ at: Date }[]>`select recorded_at at from position_trail where driver_id = ${id} order by 1`).map(
    (r) => Math.round((NOW - r.at.getTime()) / 1000),
  );

beforeAll(async () => {
  db = await freshDatabase("position_trust");
});
afterAll(() => db?.drop());

const KM = 1000;

describe("each batch is judged fix to fix from the last accepted position", () => {
  // anchor: the driver's position before the batches; batches: applied one after the other; refused: per batch,
  // "index:reason"; at: where the driver ends ([metres north, seconds ago]).
  const cases: {
    name: string;
    anchor?: Fix;
    batches: Fix[][];
    refused: string[][];
    at: [number, number];
  }[] = [
    {
      name: "teleport in one message: 3 fixes 55 km apart in 12 s move the driver only to the plausible one",
      anchor: fix(60, 0),
      batches: [[fix(36, 100), fix(24, 55 * KM), fix(12, 110 * KM)]],
      refused: [["1:impossible_speed", "2:impossible_speed"]],
      at: [100, 36],
    },
    {
      name: "a fix after a refused one is judged from the last accepted fix, not from the refused one",
      anchor: fix(60, 0),
      batches: [[fix(36, 100), fix(24, 55 * KM), fix(12, 300)]],
      refused: [["1:impossible_speed"]],
      at: [300, 12],
    },
    {
      name: "the first fix of a batch is judged from the driver's position in the database",
      anchor: fix(60, 0),
      batches: [[fix(30, 55 * KM), fix(26, 55 * KM + 50)]],
      refused: [["0:impossible_speed", "1:impossible_speed"]],
      at: [0, 60],
    },
    {
      name: "a realistic drive (15 m/s, 10 fixes 4 s apart) is accepted whole",
      anchor: fix(60, 0),
      batches: [Array.from({ length: 10 }, (_, i) => fix(40 - i * 4, 300 + (i + 1) * 60))],
      refused: [[]],
      at: [900, 4],
    },
    {
      name: "short hops are GPS noise, never judged on speed (400 m in 1 s)",
      anchor: fix(60, 0),
      batches: [[fix(59, 400)]],
      refused: [[]],
      at: [400, 59],
    },
    {
      name: "a driver's first position ever is not judged",
      batches: [[fix(30, 55 * KM), fix(20, 55 * KM + 100)]],
      refused: [[]],
      at: [55 * KM + 100, 20],
    },
    {
      name: "a bogus anchor: the 3rd impossible fix in a row (across batches) re-anchors, the next ones follow it",
      anchor: fix(100, 900 * KM),
      batches: [[fix(40, 0)], [fix(36, 50)], [fix(32, 100)], [fix(28, 150)]],
      refused: [["0:impossible_speed"], ["0:impossible_speed"], [], []],
      at: [150, 28],
    },
    {
      name: "a bogus anchor, re-anchored inside one message",
      anchor: fix(100, 900 * KM),
      batches: [[fix(40, 0), fix(36, 50), fix(32, 100), fix(28, 150)]],
      refused: [["0:impossible_speed", "1:impossible_speed"]],
      at: [150, 28],
    },
    {
      name: "a redelivered refused fix is not counted twice towards re-anchoring",
      anchor: fix(100, 900 * KM),
      batches: [[fix(40, 0)], [fix(40, 0)], [fix(40, 0)], [fix(36, 50)]],
      refused: [["0:impossible_speed"], ["0:impossible_speed"], ["0:impossible_speed"], ["0:impossible_speed"]],
      at: [900 * KM, 100],
    },
    {
      name: "a fix dated 29 s after it was received is refused, and the driver's next real fixes apply",
      anchor: fix(60, 0),
      batches: [[fix(20, 100), fix(-29, 200, 29)], [fix(16, 150), fix(12, 200)]],
      refused: [["1:future_timestamp"], []],
      at: [200, 12],
    },
    {
      name: "a phone clock ahead by less than the allowed skew (1.5 s) is fine",
      anchor: fix(60, 0),
      batches: [[fix(20, 100, 1.5)]],
      refused: [[]],
      at: [100, 20],
    },
  ];

  test.each(cases)("$name", async ({ anchor, batches, refused, at }) => {
    const id = await newDriver(anchor);
    const seen: string[][] = [];
    for (const b of batches) {
      const r = await applyPositionBatch(db.sql, staged(id, b));
      seen.push(r.rejected_seq.map((seq, i) => `${seq}:${r.rejected_reason[i]}`));
    }
    expect(seen).toEqual(refused);
    const now = await where(id);
    expect([now.north, now.ago]).toEqual(at);
  });
});

test("redelivering a batch with refused fixes changes nothing (state, trail, strikes)", async () => {
  const id = await newDriver(fix(60, 0));
  const teleport = staged(id, [fix(36, 100), fix(24, 55 * KM), fix(12, 110 * KM)]);
  const first = await applyPositionBatch(db.sql, teleport);
  const before = { state: await where(id), trail: await trailOf(id) };
  const second = await applyPositionBatch(db.sql, teleport);
  expect(first).toMatchObject({ applied: 1 });
  expect(second).toMatchObject({ applied: 0, duplicate: 1 });
  // Still refused, never stored: the same verdict each time (the fixes go to the DLQ again, as late ones do).
  expect(second.rejected_reason).toEqual(["impossible_speed", "impossible_speed"]);
  expect({ state: await where(id), trail: await trailOf(id) }).toEqual(before);
  expect(before.state.streak).toBe(2);
});

test("the database's default speed limit is the one lib/position.ts states (one rule, two readers)", async () => {
  const [row] = await db.sql<{ max: number; skew: number }[]>`
    select max_speed_m_per_s max, max_future_skew_ms skew from tracking_settings where id = 1`;
  expect(row!.max).toBe(DEFAULT_LIMITS.maxSpeedMps);
  expect(row!.skew).toBe(MAX_FUTURE_SKEW_AT_RECEIPT_MS);
  expect(row!.skew).toBeLessThan(DEFAULT_LIMITS.maxFutureSkewMs);
});

test("the limits live in tracking_settings: raising the speed limit lets the same hop through", async () => {
  const id = await newDriver(fix(60, 0));
  await db.sql`update tracking_settings set max_speed_m_per_s = 2000 where id = 1`;
  try {
    const r = await applyPositionBatch(db.sql, staged(id, [fix(30, 55 * KM)]));
    expect(r.rejected_seq).toEqual([]);
    expect((await where(id)).north).toBe(55 * KM);
  } finally {
    await db.sql`update tracking_settings set max_speed_m_per_s = 70 where id = 1`;
  }
});

test("many drivers in one batch: a teleporting one does not hold back the others", async () => {
  const honest = await Promise.all(Array.from({ length: 20 }, () => newDriver(fix(60, 0))));
  const liar = await newDriver(fix(60, 0));
  const rows = [
    ...honest.flatMap((id) => staged(id, [fix(30, 200), fix(26, 260)])),
    ...staged(liar, [fix(30, 200), fix(26, 80 * KM), fix(22, 300)]),
  ].map((r, seq) => ({ ...r, seq }));
  const r = await applyPositionBatch(db.sql, rows);
  expect(r).toMatchObject({ staged: 43, applied: 42, out_of_order: 0 });
  expect(r.rejected_seq).toEqual([41]);
  expect(r.rejected_reason).toEqual(["impossible_speed"]);
  for (const id of honest) expect(await where(id)).toMatchObject({ north: 260, ago: 26 });
  expect(await where(liar)).toMatchObject({ north: 300, ago: 22, streak: 0 });
});

test("40001: a batch judged against a position another transaction replaced is refused whole, then re-judged", async () => {
  const id = await newDriver(fix(60, 0));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  // First transaction: moves the driver 40 km north in 40 s (1,000 m/s, let through by a limit raised inside this
  // transaction only, so the second transaction never sees it) and holds the row lock, uncommitted.
  const first = db.sql.begin(async (tx) => {
    await tx`update tracking_settings set max_speed_m_per_s = 5000 where id = 1`;
    const [p] = staged(id, [fix(20, 40 * KM)]);
    await tx`select open_position_staging()`;
    await tx`insert into position_staging (seq, driver_id, recorded_at, lat, lon, h3, received_at)
             values (0, ${id}, ${new Date(p!.recordedMs)}, ${p!.lat}, ${p!.lon}, ${p!.h3}, ${new Date(p!.receivedMs)})`;
    const [r] = await tx<{ applied: number }[]>`select applied from apply_position_batch()`;
    await tx`update tracking_settings set max_speed_m_per_s = 70 where id = 1`;
    holding();
    await released;
    return r!.applied;
  });
  await held;
  // Second: near the old position; judged against it, both fixes look fine, and it waits on the driver's row...
  const rows = staged(id, [fix(16, 100), fix(12, 200)]);
  const second = applyPositionBatch(db.sql, rows).then(
    () => "applied",
    (error: unknown) => (error as { code?: string }).code,
  );
  await (async () => {
    for (;;) {
      const [{ waiting }] = (await db.sql`
        select count(*)::int waiting from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'`) as unknown as [{ waiting: number }];
      if (waiting > 0) return;
      await Bun.sleep(10);
    }
  })();
  release();
  expect(await first).toBe(1);
  // ...then finds it moved: refused whole (nothing written), and applied again it is judged from the new position,
  // 40 km away: both fixes are impossible.
  expect(await second).toBe("40001");
  const again = await applyPositionBatch(db.sql, rows);
  expect(again.rejected_reason).toEqual(["impossible_speed", "impossible_speed"]);
  expect(await where(id)).toMatchObject({ north: 40 * KM, ago: 20, streak: 2 });
  expect(await trailOf(id)).toEqual([60, 20]);
});
