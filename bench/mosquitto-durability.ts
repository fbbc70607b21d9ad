/**
 * What Mosquitto's durability settings cost and where they stop, on a broker of its own (tools/mosquitto-instance.ts:
 * the project's rendered infra/mosquitto/mosquitto.conf on another port, so the stack's broker is not disturbed):
 *
 *   backlog       a persistent bridge-like session ($share group, QoS 1, clean session false) goes away; phones'
 *                 messages (one JSON position each, the worst case) pile up for it until --backlog messages are
 *                 queued. Measured: broker RSS before and with the backlog, the persistence file's size, the graceful
 *                 stop (SIGTERM: Mosquitto writes its database) and the restart with that file, --rounds times; then
 *                 the session reconnects and must receive every message.
 *   crash window  the same absent session while phones publish at --rate; the broker is SIGKILLed at a random moment
 *                 and restarted: messages the broker acknowledged (PUBACK) to the phones but the session never gets
 *                 are what a crash loses, per autosave_interval in --autosave.
 *
 *   bun run bench:mosquitto-durability [-- --backlog 1500000 --rounds 3 --rate 5000 --autosave 1,5,30 --crashes 3]
 * JSON under bench/results/.
 */
import { statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import mqtt, { type MqttClient } from "mqtt";
import { mosquittoInstance, renderConfig, type MosquittoInstance } from "../tools/mosquitto-instance.ts";

const { values: args } = parseArgs({
  options: {
    backlog: { type: "string", default: "1500000" },
    rounds: { type: "string", default: "3" },
    rate: { type: "string", default: "5000" },
    autosave: { type: "string", default: "1,5,30" },
    crashes: { type: "string", default: "3" },
    publishers: { type: "string", default: "8" },
    port: { type: "string", default: "18851" },
    skip: { type: "string", default: "" },
    // Another config file to measure (a draft); the project's by default.
    config: { type: "string" },
  },
});
const ROOT = new URL("../", import.meta.url).pathname;
const PORT = Number(args.port);
const loadgenPassword = process.env.MQTT_LOADGEN_URL && new URL(process.env.MQTT_LOADGEN_URL).password;
const testerPassword = process.env.MQTT_URL && new URL(process.env.MQTT_URL).password;
if (!loadgenPassword || !testerPassword) throw new Error("run bin/stack up first: no loadgen/tester login in .stack/tools.env");
const url = (user: string, password: string) => `mqtt://${user}:${password}@127.0.0.1:${PORT}`;

const stats = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]!, max: sorted.at(-1)! };
};
const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** A phone's message: one JSON position (the worst case for the broker: most messages per position). */
const positionPayload = (i: number) =>
  `{"lat":40.${750000 + (i % 9999)},"lon":-73.${990000 + (i % 7777)},"tst":${1764083000 + i},"acc":5,"vel":11.2,"cog":181,"batt":87}`;

/** The absent bridge: a persistent session in a $share group, subscribed and then gone. */
async function leaveSession(run: string) {
  const client = await mqtt.connectAsync(url("tester", testerPassword!), { clientId: `dur-${run}`, clean: false, reconnectPeriod: 0 });
  await client.subscribeAsync(`$share/dur-${run}/bench/${run}/#`, { qos: 1 });
  await client.endAsync();
}

/**
 * Reconnects the session and counts distinct messages (by index) until `expected` arrived, or nothing came for 60 s
 * once messages flowed (before the first one the broker may be busy for a while with a large backlog: 120 s).
 */
async function drainSession(run: string, expected: number) {
  const seen = new Uint8Array(expected + 1);
  let distinct = 0;
  let last = performance.now();
  const started = performance.now();
  // The session persists across reconnects, so a dropped connection (a client busy with a million messages can miss
  // its keepalive) resumes where it stopped: what counts is every index arriving at least once.
  // The handler is attached before the connection opens: the broker sends the queue right after CONNACK, and
  // mqtt.js would acknowledge (and so lose) what arrived before a handler existed.
  const client = mqtt.connect(url("tester", testerPassword!), {
    clientId: `dur-${run}`, clean: false, reconnectPeriod: 1_000, connectTimeout: 120_000, keepalive: 0,
  });
  client.on("error", (error) => console.error(`drain: ${error.message}`));
  client.on("message", (_topic, payload) => {
    const i = Number(/"tst":(\d+)/.exec(payload.toString())![1]) - 1764083000;
    if (i <= expected && !seen[i]) {
      seen[i] = 1;
      distinct++;
    }
    last = performance.now();
  });
  last = performance.now();
  // 60 s of silence once messages flowed: an autosave of a large backlog stalls the broker for seconds.
  while (distinct < expected && performance.now() - last < (distinct === 0 ? 120_000 : 60_000)) await Bun.sleep(50);
  const seconds = (performance.now() - started) / 1000;
  await client.endAsync();
  return { distinct, seconds, seen };
}

/** Publishes at QoS 1 from `publishers` connections, at most `rate`/s (0 = as fast as acks come back). */
function startPublishing(run: string, total: number, rate: number) {
  const acked = new Uint8Array(total);
  let ackCount = 0;
  let sent = 0;
  let stopped = false;
  const drivers = Array.from({ length: 2000 }, () => crypto.randomUUID());
  const done = (async () => {
    const clients: MqttClient[] = await Promise.all(
      Array.from({ length: Number(args.publishers) }, (_, i) =>
        mqtt.connectAsync(url("loadgen", loadgenPassword!), { clientId: `dur-pub-${run}-${i}`, clean: true, reconnectPeriod: 0 })),
    );
    for (const c of clients) c.on("error", () => undefined);
    const started = performance.now();
    while (sent < total && !stopped) {
      if (rate > 0) {
        const wait = started + (sent / rate) * 1000 - performance.now();
        if (wait > 1) await Bun.sleep(wait);
      } else if (sent - ackCount > 4_000) {
        await Bun.sleep(1);
        continue;
      }
      const i = sent++;
      clients[i % clients.length]!.publish(`bench/${run}/drivers/${drivers[i % drivers.length]}/location`, positionPayload(i), { qos: 1 }, (error) => {
        if (!error) {
          acked[i] = 1;
          ackCount++;
        }
      });
    }
    while (!stopped && ackCount < sent) await Bun.sleep(5);
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  })();
  return {
    acked,
    acks: () => ackCount,
    stop: async () => {
      stopped = true;
      await done;
    },
    done,
  };
}

/** Publishes one QoS 1 message at a time (outside the session's topics) for `seconds`: the longest PUBACK wait. */
async function probeStalls(run: string, seconds: number) {
  const client = await mqtt.connectAsync(url("loadgen", loadgenPassword!), { clientId: `dur-probe-${run}`, reconnectPeriod: 0 });
  let maxMs = 0;
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const t = performance.now();
    await client.publishAsync(`bench/${run}-probe/x`, "p", { qos: 1 });
    maxMs = Math.max(maxMs, performance.now() - t);
    await Bun.sleep(50);
  }
  await client.endAsync();
  return { maxMs };
}

async function backlogCase(broker: MosquittoInstance) {
  const total = Number(args.backlog);
  const run = `backlog${Date.now().toString(36)}`;
  await broker.start();
  await leaveSession(run);
  await Bun.sleep(500);
  const rssIdle = broker.rssBytes();
  const publishStarted = performance.now();
  const publishing = startPublishing(run, total, 0);
  await publishing.done;
  const publishSeconds = (performance.now() - publishStarted) / 1000;
  const rssBacklog = broker.rssBytes();
  console.error(`backlog: ${publishing.acks()} acknowledged in ${publishSeconds.toFixed(1)} s; RSS ${mb(rssIdle)} → ${mb(rssBacklog)} MB`);
  const stall = await probeStalls(run, autosaveSeconds + 5);
  console.error(`longest PUBACK wait over ${autosaveSeconds + 5} s with the backlog held: ${stall.maxMs.toFixed(0)} ms`);
  const stops: number[] = [];
  const starts: number[] = [];
  const rssAfterRestart: number[] = [];
  let fileBytes = 0;
  for (let r = 0; r < Number(args.rounds); r++) {
    const t = performance.now();
    await broker.stop("SIGTERM");
    stops.push(performance.now() - t);
    fileBytes = statSync(`${broker.dir}/data/mosquitto.db`).size;
    starts.push(await broker.start());
    rssAfterRestart.push(broker.rssBytes());
    console.error(`round ${r + 1}: stop ${stops.at(-1)!.toFixed(0)} ms, start ${starts.at(-1)!.toFixed(0)} ms, file ${mb(fileBytes)} MB`);
  }
  const drained = await drainSession(run, total);
  await broker.stop("SIGTERM");
  const missing: number[] = [];
  for (let i = 0; i < total && missing.length < 20; i++) if (!drained.seen[i]) missing.push(i);
  console.error(`drained ${drained.distinct} of ${total} in ${drained.seconds.toFixed(1)} s; first missing: ${missing.join(",")}`);
  return {
    messages: total,
    acknowledged: publishing.acks(),
    publishSeconds,
    rssIdleMb: mb(rssIdle),
    rssWithBacklogMb: mb(rssBacklog),
    rssPerQueuedMessageBytes: Math.round((rssBacklog - rssIdle) / total),
    rssAfterRestartMb: stats(rssAfterRestart.map(mb)),
    persistenceFileMb: mb(fileBytes),
    gracefulStopMs: stats(stops),
    restartMs: stats(starts),
    // Autosave writes the whole database in the broker's only thread: the longest a phone waits for its PUBACK
    // while the backlog is held and an autosave happens.
    longestPubackWaitMs: Math.round(stall.maxMs),
    receivedAfterRestarts: drained.distinct,
    drainSeconds: drained.seconds,
  };
}

async function crashCase(broker: MosquittoInstance, autosave: number) {
  const rate = Number(args.rate);
  const runs: { acknowledged: number; received: number; lost: number; killedAfterMs: number }[] = [];
  for (let c = 0; c < Number(args.crashes); c++) {
    const run = `crash${autosave}x${c}${Date.now().toString(36)}`;
    await broker.start();
    await leaveSession(run);
    // Long enough for several autosaves, and a random phase against the autosave clock.
    const killAfter = (2 * autosave + 2 + Math.random() * autosave) * 1000;
    const publishing = startPublishing(run, Math.ceil((rate * killAfter) / 1000) + rate * 10, rate);
    await Bun.sleep(killAfter);
    await broker.stop("SIGKILL");
    await publishing.stop();
    const acknowledged = publishing.acks();
    await broker.start();
    const drained = await drainSession(run, publishing.acked.length);
    let lost = 0;
    for (let i = 0; i < publishing.acked.length; i++) if (publishing.acked[i] && !drained.seen[i]) lost++;
    await broker.stop("SIGTERM");
    runs.push({ acknowledged, received: drained.distinct, lost, killedAfterMs: Math.round(killAfter) });
    console.error(`autosave ${autosave} s, crash ${c + 1}: ${JSON.stringify(runs.at(-1))}`);
  }
  return {
    autosaveIntervalS: autosave,
    ratePerS: rate,
    lost: stats(runs.map((r) => r.lost)),
    // At the rate the phones actually reached (a loaded box publishes slower than --rate).
    lostSeconds: stats(runs.map((r) => r.lost / (r.acknowledged / (r.killedAfterMs / 1000)))),
    runs,
  };
}

const dir = `${ROOT}.stack/bench-mosquitto-durability`;
const skip = new Set(args.skip.split(",").filter(Boolean));
const out: Record<string, unknown> = {
  benchmark: "mosquitto-durability",
  at: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model },
  commit: (await new Response(Bun.spawn(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stdout: "pipe" }).stdout).text()).trim(),
  args,
};
const configFile = args.config;
out.config = renderConfig({ port: PORT, dir, configFile })
  .split("\n")
  .filter((line) => /^(persistence|autosave|max_queued|max_inflight|sys_interval)/.test(line));
const autosaveSeconds = Number(
  (out.config as string[]).find((line) => line.startsWith("autosave_interval "))?.split(" ")[1] ?? 1800,
);
if (!skip.has("backlog")) {
  const broker = mosquittoInstance({ port: PORT, dir: `${dir}/backlog`, configFile });
  try {
    out.backlog = await backlogCase(broker);
  } finally {
    await broker.remove();
  }
}
if (!skip.has("crash")) {
  const crash = [];
  for (const autosave of args.autosave.split(",").map(Number)) {
    const broker = mosquittoInstance({ port: PORT, dir: `${dir}/crash-${autosave}`, configFile, settings: { autosave_interval: autosave } });
    try {
      crash.push(await crashCase(broker, autosave));
    } finally {
      await broker.remove();
    }
  }
  out.crashWindow = crash;
}
const cases = ["backlog", "crash"].filter((c) => !skip.has(c)).join("-");
const file = `${ROOT}bench/results/mosquitto-durability-${String(out.at).replaceAll(":", "-").replace(".", "-")}-${cases}.json`;
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify(out, null, 2));
console.log(`written ${file}`);
