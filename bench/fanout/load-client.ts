/**
 * One load-generator process of bench:fanout: holds its share of the live streams (bench/fanout/sse-client.ts) and
 * prints one JSON line per report interval on stdout: streams open, events and their latency buckets since the last
 * line (from the position's time, and from its published_at: the API's part), reconnects, refusals, and quiet streams
 * (open, but no event for longer than --starve-after-ms). At most every --quiet-every-ms a line also lists the quiet
 * streams as flat pairs [target index in --targets, last event ms], for the parent to judge (bench/fanout/starvation.ts).
 *
 *   bun bench/fanout/load-client.ts --targets FILE --from 0 --to 15000 --port 8000 [--addresses 127.0.0.2,127.0.0.3]
 *                                   [--per-second 2000] [--report-ms 5000] [--starve-after-ms 30000] [--quiet-every-ms 5000]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createHistogram } from "./histogram.ts";
import { createSseClient, type StreamTarget } from "./sse-client.ts";

const { values: args } = parseArgs({
  options: {
    targets: { type: "string" },
    from: { type: "string", default: "0" },
    to: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    addresses: { type: "string", default: "" },
    "per-second": { type: "string", default: "2000" },
    "report-ms": { type: "string", default: "5000" },
    "starve-after-ms": { type: "string", default: "30000" },
    "max-pending": { type: "string", default: "200" },
    "quiet-every-ms": { type: "string", default: "5000" },
  },
});
if (!args.targets || !args.port) throw new Error("--targets and --port are required");
const all = JSON.parse(readFileSync(args.targets, "utf8")) as StreamTarget[];
const from = Number(args.from);
const targets = all.slice(from, args.to === undefined ? undefined : Number(args.to));
const starveAfterMs = Number(args["starve-after-ms"]);
const quietEveryMs = Number(args["quiet-every-ms"]);
const targetIndex = new Map(targets.map((t, i) => [t, from + i]));
let quietListedAtMs = 0;

const latency = createHistogram();
/** published_at → receipt: the API's part (the database's notice, the process's fan-out, the socket), commit to client. */
const push = createHistogram();
let positions = 0;
let tracks = 0;
let refused = 0;
const refusedBy: Record<number, number> = {};
const client = createSseClient({
  host: args.host,
  port: Number(args.port),
  localAddresses: args.addresses ? args.addresses.split(",") : undefined,
  onEvent(_stream, event, receivedMs) {
    if (event.event === "position") {
      positions += 1;
      if (event.atMs !== undefined && Number.isFinite(event.atMs)) latency.add(receivedMs - event.atMs);
      if (event.publishedAtMs !== undefined && Number.isFinite(event.publishedAtMs)) push.add(receivedMs - event.publishedAtMs);
    } else if (event.event === "track") tracks += 1;
  },
  onRefused: (_stream, status) => {
    refused += 1;
    refusedBy[status] = (refusedBy[status] ?? 0) + 1;
  },
  maxPending: Number(args["max-pending"]),
});

const report = () => {
  const now = Date.now();
  let starved = 0;
  let neverEvent = 0;
  const listQuiet = now - quietListedAtMs >= quietEveryMs;
  const quiet: number[] = [];
  for (const s of client.streams) {
    if (!s.open) continue;
    if (s.lastEventAtMs === 0) neverEvent += 1;
    else if (now - s.lastEventAtMs > starveAfterMs) starved += 1;
    else continue;
    if (listQuiet) quiet.push(targetIndex.get(s.target)!, s.lastEventAtMs);
  }
  if (listQuiet) quietListedAtMs = now;
  const line = {
    at: now,
    targets: targets.length,
    started: client.streams.length,
    open: client.open,
    positions,
    tracks,
    refused,
    refusedBy,
    reconnects: client.reconnects,
    starved,
    neverEvent,
    quiet: listQuiet ? quiet : undefined,
    latency: latency.take(),
    push: push.take(),
    rssBytes: process.memoryUsage.rss(),
  };
  positions = 0;
  tracks = 0;
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
setInterval(report, Number(args["report-ms"]));
process.on("SIGTERM", () => {
  client.close();
  process.exit(0);
});
await client.start(targets, Number(args["per-second"]));
