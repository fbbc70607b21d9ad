/**
 * `bun run bench:device [-- --runs 3 --scale 60 --modes a,b,c,d]`: one simulated phone replays the recorded one-hour
 * route (bench/device/route-nyc-1h.json: available, a delivery, available again) in four ways (bench/device/modes.ts)
 * over loopback with TLS on both Mosquitto and the API, `scale` times faster than real time. tcpdump counts every
 * packet both ways (IP bytes: TCP/IP headers, TLS records); bench/device/radio.ts turns their route times into LTE
 * wake-ups, radio-on time and energy. Writes bench/results/device-<iso>.json and an SVG bar chart beside it.
 *
 * Servers of its own: a Mosquitto with the project's config and its TLS listener (tools/mosquitto-instance.ts), and
 * the API over HTTPS (API_TLS_CERT_FILE/API_TLS_KEY_FILE) on a scratch database and its own Kafka topic. The mode
 * commands (d) are published by the bench as the stack's `tester` user, retained on drivers/{id}/cmd, at each change
 * between watched and available, as the modes service would.
 */
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { createTokenService } from "../api/auth/tokens.ts";
import { authConfig } from "../lib/config.ts";
import { freePort } from "../tools/free-port.ts";
import { createTopic, deleteTopic } from "../tools/kafka-cli.ts";
import { mosquittoInstance } from "../tools/mosquitto-instance.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";
import { startCapture } from "./device/capture.ts";
import { modeMetrics, type ModeMetrics } from "./device/metrics.ts";
import { MODE_LABELS, MODES, runMode, type ModeName, type Setup } from "./device/modes.ts";
import { LTE } from "./device/radio.ts";
import { loadRoute } from "./device/route.ts";
import { plotDeviceResults } from "./device/plot.ts";
import { resultStem } from "./support/plot.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    scale: { type: "string", default: "60" },
    modes: { type: "string", default: MODES.join(",") },
  },
  strict: true,
});
const runs = Number(args.runs);
const scale = Number(args.scale);
const modes = args.modes!.split(",") as ModeName[];
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a whole number >= 1");
if (!(scale >= 1 && scale <= 240)) throw new Error("--scale must be between 1 and 240");
if (modes.some((m) => !MODES.includes(m))) throw new Error(`--modes: a list of ${MODES.join(",")}`);

const TLS_DIR = `${ROOT}.stack/tls`;
const ca = readFileSync(`${TLS_DIR}/ca.crt`, "utf8");
const tester = new URL(process.env.MQTT_URL ?? "");
if (!tester.username) throw new Error("MQTT_URL has no user: run bin/stack up (it writes .stack/tools.env)");
const runId = `dev${process.pid}`;
const route = await loadRoute();

const mqttPort = await freePort();
const mqttTlsPort = await freePort();
const broker = mosquittoInstance({
  port: mqttPort,
  tlsPort: mqttTlsPort,
  dir: `${ROOT}.stack/bench-device-${process.pid}`,
  settings: { plugin_opt_hold_publishers_seconds: 0 },
});
const scratch = await createScratchDatabase(`bench_device_${process.pid}`);
const topic = `test-pos-${runId}`;
let api: Bun.Subprocess | undefined;
const results: { mode: ModeName; run: number; metrics: ModeMetrics }[] = [];
try {
  await broker.start();
  await createTopic(topic, 1);
  const sql = postgres(scratch.url, { max: 1, onnotice: () => {} });
  const [driver] = await sql<{ id: string }[]>`insert into drivers (name) values ('bench device phone') returning id`;
  await sql`insert into driver_state (driver_id) values (${driver!.id})`;
  await sql.end();
  const token = (await createTokenService(authConfig()).mint("driver", driver!.id, { ttl: "12h" })).token;

  const apiPort = await freePort();
  api = Bun.spawn(["bun", "api/server.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      API_PORT: String(apiPort),
      DATABASE_URL: scratch.url,
      KAFKA_TOPIC: topic,
      API_TLS_CERT_FILE: `${TLS_DIR}/server.crt`,
      API_TLS_KEY_FILE: `${TLS_DIR}/server.key`,
      MQTT_PASSWORD_FILE: "",
    },
    stdout: "ignore",
    stderr: "inherit",
  });
  const apiBase = `https://127.0.0.1:${apiPort}`;
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${apiBase}/ready`, { tls: { ca } } as RequestInit).catch(() => undefined))?.status !== 200) {
    if (api.exitCode !== null) throw new Error(`the API exited (${api.exitCode})`);
    if (Date.now() > deadline) throw new Error("the HTTPS API was not ready within 60 s");
    await Bun.sleep(200);
  }

  const setup: Setup = {
    route,
    scale,
    driverId: driver!.id,
    baseTst: Math.floor(Date.now() / 1000) - 3700,
    ca,
    mqttTlsUrl: `mqtts://127.0.0.1:${mqttTlsPort}`,
    mqttPlainUrl: `mqtt://127.0.0.1:${mqttPort}`,
    mqttUser: decodeURIComponent(tester.username),
    mqttPassword: decodeURIComponent(tester.password),
    apiBase,
    apiToken: token,
  };
  for (let run = 1; run <= runs; run++) {
    for (const mode of modes) {
      const ports = mode === "a" || mode === "b" ? [apiPort] : [mqttTlsPort];
      const capture = await startCapture(`${tmpdir()}/bench-device-${process.pid}-${mode}.pcap`, ports);
      const trace = await runMode(mode, setup, `${runId}r${run}`);
      const packets = await capture.stop();
      const metrics = modeMetrics(trace, packets, route);
      results.push({ mode, run, metrics });
      console.log(
        `run ${run} ${MODE_LABELS[mode]}: ${(metrics.bytesPerHour / 1024).toFixed(1)} KiB/h, ${metrics.wakeUpsPerHour} wake-ups/h, ` +
          `${metrics.radioOnSecondsPerHour.toFixed(0)} s radio on, ${metrics.energyJPerHour.toFixed(0)} J/h, ` +
          `watched p99 ${metrics.watchedFreshnessP99S.toFixed(2)} s, dispatch age p99 ${metrics.dispatchAgeP99S.toFixed(1)} s` +
          (metrics.errors.length ? ` ERRORS: ${metrics.errors.slice(0, 3).join("; ")}` : ""),
      );
    }
  }
} finally {
  api?.kill("SIGTERM");
  await api?.exited;
  await broker.remove();
  await deleteTopic(topic).catch(() => undefined);
  await scratch.drop();
}

// ---- summary: min / median / max over the runs, per mode and figure
const FIGURES = [
  "bytesPerHour",
  "bytesUpPerHour",
  "bytesDownPerHour",
  "packetsPerHour",
  "messagesPerHour",
  "bytesWhileWatched",
  "messagesWhileWatched",
  "wakeUpsPerHour",
  "radioOnSecondsPerHour",
  "energyJPerHour",
  "watchedFreshnessP50S",
  "watchedFreshnessP99S",
  "dispatchAgeP99S",
  "dispatchAgeMaxS",
] as const;
type Figure = (typeof FIGURES)[number];
const spread = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor((s.length - 1) / 2)]!, max: s.at(-1)! };
};
const summary = Object.fromEntries(
  modes.map((mode) => [
    mode,
    Object.fromEntries(FIGURES.map((f) => [f, spread(results.filter((r) => r.mode === mode).map((r) => r.metrics[f]))])),
  ]),
) as Record<ModeName, Record<Figure, { min: number; median: number; max: number }>>;

const ratio = (f: Figure) => (summary.d && summary.b ? summary.d[f].median / summary.b[f].median : null);
const targets = {
  bytesVsB: { value: ratio("bytesPerHour"), target: 0.05 },
  wakeUpsVsB: { value: ratio("wakeUpsPerHour"), target: 0.25 },
  energyVsB: { value: ratio("energyJPerHour"), target: null },
  watchedFreshnessP99S: { value: summary.d?.watchedFreshnessP99S.max ?? null, target: 4 },
  dispatchAgeP99S: { value: summary.d?.dispatchAgeP99S.max ?? null, target: 30 },
};

const at = new Date();
const stem = resultStem("device", at);
const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const out = {
  benchmark: "device",
  at: at.toISOString(),
  parameters: { runs, scale, modes, routeFixes: route.length, fixIntervalS: 4, capture: "tcpdump -i lo, IP packet bytes" },
  machine: { cpus: navigator.hardwareConcurrency, bun: Bun.version, commit },
  radioModel: { source: "Huang et al., MobiSys 2012, Tables 3-4", ...LTE },
  modeCommands: "published by the bench as `tester`, retained on drivers/{id}/cmd (no modes service in this run)",
  summary,
  targets,
  runs: results,
};
await Bun.write(`${stem}.json`, `${JSON.stringify(out, null, 2)}\n`);

await plotDeviceResults(out, `${stem}.svg`);

const fmt = (x: { min: number; median: number; max: number }, digits = 0) =>
  `${x.median.toFixed(digits)} (${x.min.toFixed(digits)}-${x.max.toFixed(digits)})`;
console.log("\nmode | KiB/h | messages/h | wake-ups/h | radio-on s/h | J/h | watched p50 / p99 s | dispatch age p99 s");
for (const mode of modes) {
  const s = summary[mode];
  const kib = { min: s.bytesPerHour.min / 1024, median: s.bytesPerHour.median / 1024, max: s.bytesPerHour.max / 1024 };
  console.log(
    `${MODE_LABELS[mode]} | ${fmt(kib, 1)} | ${fmt(s.messagesPerHour)} | ${fmt(s.wakeUpsPerHour)} | ${fmt(s.radioOnSecondsPerHour)} | ` +
      `${fmt(s.energyJPerHour)} | ${fmt(s.watchedFreshnessP50S, 2)} / ${fmt(s.watchedFreshnessP99S, 2)} | ${fmt(s.dispatchAgeP99S, 1)}`,
  );
}
console.log(`\ntargets: ${JSON.stringify(targets)}\n${stem}.json\n${stem}.svg`);
process.exit(0);
