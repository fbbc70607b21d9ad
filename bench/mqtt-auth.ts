/**
 * What authentication costs at the broker (the running dev stack's Mosquitto, password_file + acl_file +
 * identity-guard): (1) issuing credentials for 100,000 drivers with lib/mqtt-credentials.ts (hashing + one password
 * file rewrite + one reload, confirmed), (2) one more change once the file holds them (a single sign-in's latency at
 * fleet size), (3) CONNECT..CONNACK per second with distinct driver credentials (each connection: TCP, CONNECT with
 * that driver's username/password, CONNACK, DISCONNECT), `--concurrency` at a time. Every phase runs `--runs` times;
 * min / median / max are written to bench/results/mqtt-auth-<time>.json. The drivers are revoked afterwards.
 *
 *   bun run bench/mqtt-auth.ts [--drivers 100000] [--connects 20000] [--concurrency 200] [--runs 3]
 */
import { connect as tcpConnect } from "node:net";
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import mqttPacket from "mqtt-packet";
import { config, parseMqttAdminConfig } from "../lib/config.ts";
import { createMqttCredentialStore, type MqttCredentials } from "../lib/mqtt-credentials.ts";

const { values: args } = parseArgs({
  options: {
    drivers: { type: "string", default: "100000" },
    connects: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "200" },
    runs: { type: "string", default: "3" },
  },
});
const DRIVERS = Number(args.drivers);
const CONNECTS = Number(args.connects);
const CONCURRENCY = Number(args.concurrency);
const RUNS = Number(args.runs);

const broker = new URL(config().mqttUrl);
const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl, reloadTimeoutMs: 120_000 });

/** One CONNECT..CONNACK with a driver's credentials, then DISCONNECT; resolves with the CONNACK return code. */
function connectOnce(c: MqttCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(Number(broker.port || 1883), broker.hostname);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    socket.on("connect", () =>
      socket.write(
        mqttPacket.generate({
          cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: true, keepalive: 30,
          clientId: c.client_id, username: c.username, password: Buffer.from(c.password),
        }),
      ),
    );
    socket.on("data", (chunk: Buffer) => parser.parse(chunk));
    parser.on("packet", (packet) => {
      if (packet.cmd !== "connack") return;
      socket.end(mqttPacket.generate({ cmd: "disconnect" }));
      resolve(packet.returnCode ?? -1);
    });
    socket.on("error", reject);
  });
}

async function connectsPerSecond(credentials: MqttCredentials[]): Promise<{ perSecond: number; refused: number }> {
  let next = 0;
  let refused = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CONNECTS) {
        const c = credentials[next++ % credentials.length]!;
        if ((await connectOnce(c)) !== 0) refused++;
      }
    }),
  );
  return { perSecond: Math.round(CONNECTS / ((performance.now() - started) / 1000)), refused };
}

const stats = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { min: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]!, max: sorted.at(-1)!, runs: xs };
};

const issueSeconds: number[] = [];
const oneChangeMs: number[] = [];
const connects: number[] = [];
for (let run = 1; run <= RUNS; run++) {
  const ids = Array.from({ length: DRIVERS }, () => crypto.randomUUID());
  let t = performance.now();
  const credentials = await store.issueMany(ids);
  issueSeconds.push(Number(((performance.now() - t) / 1000).toFixed(2)));

  t = performance.now();
  await store.issue(crypto.randomUUID()).then((c) => store.revoke(c.username));
  // issue + revoke: two confirmed reloads of the full file; half is one change.
  oneChangeMs.push(Math.round((performance.now() - t) / 2));

  const c = await connectsPerSecond(credentials);
  if (c.refused > 0) throw new Error(`${c.refused} connects were refused: the issued credentials do not work`);
  connects.push(c.perSecond);
  await store.revokeMany(ids);
  console.log(`run ${run}: issued ${DRIVERS} in ${issueSeconds.at(-1)} s, one change at ${DRIVERS} drivers ${oneChangeMs.at(-1)} ms, ${c.perSecond} connects/s`);
}
await store.close();

const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
const result = {
  benchmark: "mqtt-auth",
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGb: Math.round(totalmem() / 2 ** 30) },
  commit,
  broker: "mosquitto 2.0.11, password_file ($7$ PBKDF2-SHA512, 101 iterations) + acl_file + identity-guard plugin",
  parameters: { drivers: DRIVERS, connects: CONNECTS, concurrency: CONCURRENCY, runs: RUNS },
  issueAllSeconds: stats(issueSeconds),
  oneChangeAtFleetSizeMs: stats(oneChangeMs),
  connectsPerSecond: stats(connects),
};
const file = `bench/results/mqtt-auth-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
await Bun.write(file, JSON.stringify(result, null, 2));
console.log(JSON.stringify(result, null, 2));
console.log(`written ${file}`);
process.exit(0);
