/**
 * Latencies in log-spaced buckets (~5% wide), mergeable by adding counts: each load-generator process sends its
 * buckets, the parent adds them up and reads percentiles, with no sample list kept anywhere.
 */
const PER_E = 20; // buckets per factor e: consecutive bounds differ by e^(1/20) ≈ 5%

export type Buckets = Record<number, number>;

export function createHistogram() {
  let buckets: Buckets = {};
  let count = 0;
  return {
    add(ms: number) {
      const index = Math.round(Math.log1p(Math.max(0, ms)) * PER_E);
      buckets[index] = (buckets[index] ?? 0) + 1;
      count += 1;
    },
    get count() {
      return count;
    },
    /** The buckets since the last take, and a fresh start. */
    take(): Buckets {
      const out = buckets;
      buckets = {};
      count = 0;
      return out;
    },
  };
}

export function mergeBuckets(into: Buckets, from: Buckets): Buckets {
  for (const [k, v] of Object.entries(from)) into[Number(k)] = (into[Number(k)] ?? 0) + v;
  return into;
}

export const bucketCount = (b: Buckets) => Object.values(b).reduce((a, v) => a + v, 0);

/** The q-quantile in ms (NaN when empty). */
export function quantileMs(b: Buckets, q: number): number {
  const keys = Object.keys(b).map(Number).sort((x, y) => x - y);
  const total = bucketCount(b);
  if (total === 0) return NaN;
  let seen = 0;
  for (const k of keys) {
    seen += b[k]!;
    if (seen >= q * total) return Math.expm1(k / PER_E);
  }
  return Math.expm1(keys.at(-1)! / PER_E);
}
