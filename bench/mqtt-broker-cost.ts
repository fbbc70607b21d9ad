/**
 * What authorisation costs the broker per message: the same QoS 1 stream (publishers on `drivers/{id}/location`, one
 * subscriber in a `$share` group, as the bridge is) through two Mosquitto processes on this machine, in alternating
 * rounds so both see the same background load:
 *   secured  the dev stack's broker (password_file + %u acl_file + identity-guard plugin), publishers as `loadgen`,
 *            the subscriber as `tester`;
 *   open     a broker started for this run with the same settings but anonymous, no ACL, no plugin.
 * Reports the broker's CPU time per 10,000 messages (from /proc/<pid>/stat) and the publish→delivery latency
 * percentiles, min / median / max over `--rounds`, and the secured/open ratio. JSON under bench/results/.
 *
 *   bun run bench:mqtt-broker-cost [-- --messages 60000 --publishers 20 --rounds 3 --rate 6000]
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../lib/config.ts";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "60000" },
    publishers: { type: "string", default: "20" },
    rounds: { type: "string", default: "3" },
    rate: { type: "string", default: "6000" },
  },
});
const MESSAGES = Number(args.messages);
const PUBLISHERS = Number(args.publishers);
const ROUNDS = Number(args.rounds);
const RATE = Number(args.rate);
const ROOT = new URL("../", import.meta.url).pathname;
const TICKS_PER_SECOND = 100; // Linux USER_HZ

const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime + stime
};
const pidOfPort = async (port: number) => {
  const proc = Bun.spawn(["ss", "-Hltnp", `sport = :${port}`], { stdout: "pipe" });
  const pid = /pid=(\d+)/.exec(await new Response(proc.stdout).text())?.[1];
  if (!pid) throw new Error(`no process listens on ${port}`);
  return Number(pid);
};

/** A plain broker for the comparison: the stack's settings minus authentication and authorisation. */
async function startOpenBroker(port: number) {
  const dir = `${ROOT}.stack/bench-open-broker`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    `${dir}/mosquitto.conf`,
    [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false", "max_inflight_messages 0",
      "max_queued_messages 100000", "message_size_limit 262144", "log_dest none", "user root"].join("\n") + "\n",
  );
  const proc = Bun.spawn(["mosquitto", "-c", `${dir}/mosquitto.conf`], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100; i++) {
    if (await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 500 }).then((c) => c.endAsync().then(() => true), () => false)) {
      return { pid: proc.pid, stop: () => { proc.kill(); rmSync(dir, { recursive: true, force: true }); } };
    }
    await Bun.sleep(50);
  }
  proc.kill();
  throw new Error("the open broker did not start");
}

const percentile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

interface Round { cpuMsPer10k: number; p50Ms: number; p99Ms: number; seconds: number }

async function round(label: string, pid: number, publisherUrl: string, subscriberUrl: string): Promise<Round> {
  const run = `${label}-${Date.now().toString(36)}`;
  const prefix = `bench/${run}/`;
  const received = new Float64Array(MESSAGES);
  let count = 0;
  const subscriber = await mqtt.connectAsync(subscriberUrl, { clientId: `cost-sub-${run}`, clean: true, reconnectPeriod: 0 });
  subscriber.on("message", (_topic, payload) => {
    const i = Number(payload.subarray(0, payload.indexOf(44)).toString());
    received[i] = performance.now() - Number(payload.subarray(payload.indexOf(44) + 1, payload.indexOf(44, payload.indexOf(44) + 1)).toString());
    count++;
  });
  await subscriber.subscribeAsync(`$share/${run}/${prefix}drivers/+/location`, { qos: 1 });
  const publishers: MqttClient[] = await Promise.all(
    Array.from({ length: PUBLISHERS }, (_, i) =>
      mqtt.connectAsync(publisherUrl, { clientId: `cost-pub-${run}-${i}`, clean: true, reconnectPeriod: 0 })),
  );
  const drivers = Array.from({ length: 1000 }, () => crypto.randomUUID());
  const body = ',"lat":40.75,"lon":-73.99,"tst":1764083000}';
  const cpuBefore = cpuSeconds(pid);
  const started = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    // Paced: at `RATE` messages/s the broker is measured at a steady load, not at its own limit.
    const due = started + (i / RATE) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await Bun.sleep(wait);
    const driver = drivers[i % drivers.length]!;
    publishers[i % PUBLISHERS]!.publish(`${prefix}drivers/${driver}/location`, `${i},${performance.now()}${body}`, { qos: 1 });
  }
  const deadline = performance.now() + 60_000;
  while (count < MESSAGES && performance.now() < deadline) await Bun.sleep(20);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(pid) - cpuBefore;
  await Promise.all([...publishers, subscriber].map((c) => c.endAsync()));
  if (count < MESSAGES) throw new Error(`${label}: ${count} of ${MESSAGES} messages arrived`);
  const latencies = [...received].sort((a, b) => a - b);
  return { cpuMsPer10k: (cpu * 1000 * 10_000) / MESSAGES, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99), seconds };
}

const stats = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]!, max: sorted.at(-1)! };
};

const securedUrl = new URL(config().mqttUrl);
const loadgenUrl = process.env.MQTT_LOADGEN_URL;
if (!loadgenUrl || !securedUrl.username) throw new Error("run bin/stack up first: no loadgen/tester login in .stack/tools.env");
const securedPid = await pidOfPort(Number(securedUrl.port || 1883));
const OPEN_PORT = 18_830;
const open = await startOpenBroker(OPEN_PORT);
const results: Record<"secured" | "open", Round[]> = { secured: [], open: [] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    results.open.push(await round("open", open.pid, `mqtt://127.0.0.1:${OPEN_PORT}`, `mqtt://127.0.0.1:${OPEN_PORT}`));
    results.secured.push(await round("secured", securedPid, loadgenUrl, securedUrl.toString()));
    console.error(`round ${r + 1}: open ${JSON.stringify(results.open.at(-1))} secured ${JSON.stringify(results.secured.at(-1))}`);
  }
} finally {
  open.stop();
}

const summary = (rounds: Round[]) => ({
  cpuMsPer10k: stats(rounds.map((r) => r.cpuMsPer10k)),
  p50Ms: stats(rounds.map((r) => r.p50Ms)),
  p99Ms: stats(rounds.map((r) => r.p99Ms)),
});
const out = {
  benchmark: "mqtt-broker-cost",
  at: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model },
  commit: (await new Response(Bun.spawn(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stdout: "pipe" }).stdout).text()).trim(),
  args: { messages: MESSAGES, publishers: PUBLISHERS, rounds: ROUNDS, rate: RATE },
  open: summary(results.open),
  secured: summary(results.secured),
  ratio_cpu_median: summary(results.secured).cpuMsPer10k.median / summary(results.open).cpuMsPer10k.median,
  rounds: results,
};
const file = `${ROOT}bench/results/mqtt-broker-cost-${out.at.replaceAll(":", "-").replace(".", "-")}.json`;
writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
console.log("broker      CPU ms per 10k msgs (min/median/max)   p50 ms (median)   p99 ms (median)");
for (const name of ["open", "secured"] as const) {
  const s = out[name];
  console.log(
    `${name.padEnd(10)}  ${[s.cpuMsPer10k.min, s.cpuMsPer10k.median, s.cpuMsPer10k.max].map((v) => v.toFixed(0)).join(" / ").padEnd(38)}` +
      `${s.p50Ms.median.toFixed(2).padEnd(18)}${s.p99Ms.median.toFixed(2)}`,
  );
}
console.log(`secured / open CPU (medians): ${out.ratio_cpu_median.toFixed(2)}×\nwritten ${file}`);
