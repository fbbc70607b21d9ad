/** Reading the services' /metrics (Prometheus text) in the benchmarks: a scrape summed over labels, and quantiles. */

/** One scrape as name{labels} -> value, the `process` label dropped so several processes' series add up. */
export async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line) continue;
    const space = line.lastIndexOf(" ");
    const name = line.slice(0, space).replace(/,?process="[^"]*"/, "").replace("{}", "");
    values.set(name, (values.get(name) ?? 0) + Number(line.slice(space + 1)));
  }
  return values;
}

/** A quantile from Prometheus histogram buckets (linear inside the bucket), over the delta of two scrapes. */
export function quantile(before: Map<string, number>, after: Map<string, number>, metric: string, q: number): number {
  const buckets: { le: number; count: number }[] = [];
  for (const [key, value] of after) {
    const m = new RegExp(`^${metric}_bucket\\{le="([^"]+)"\\}$`).exec(key);
    if (m) buckets.push({ le: m[1] === "+Inf" ? Infinity : Number(m[1]), count: value - (before.get(key) ?? 0) });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return NaN;
  let previous = { le: 0, count: 0 };
  for (const b of buckets) {
    if (b.count >= q * total) {
      if (b.le === Infinity) return previous.le;
      const inside = b.count - previous.count;
      return previous.le + (b.le - previous.le) * (inside === 0 ? 0 : (q * total - previous.count) / inside);
    }
    previous = b;
  }
  return NaN;
}
