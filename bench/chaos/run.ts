/**
 * One chaos run: its own database, Kafka topics and MQTT topic root; two bridges and two position workers, each under
 * its supervisor; a fleet of QoS 1 phones with outboxes. Faults are injected one after another, each once the
 * pipeline has caught up with the previous one; then the phones stop, their outboxes drain, the pipeline settles and
 * the phones' logs are reconciled with the trail and the dead-letter topic (accounting.ts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { generateData, readDrivers } from "../../db/generate.ts";
import { cityByName } from "../../lib/cities.ts";
import { config } from "../../lib/config.ts";
import { connectDatabase } from "../../lib/db.ts";
import { createTopic, kcat, readTopic } from "../../tools/kafka-cli.ts";
import { kafkaIdentity } from "../../tools/pipeline.ts";
import { serviceUrl } from "../../tools/service-url.ts";
import { startTcpProxy } from "../../tools/tcp-proxy.ts";
import { reconcile, type Accounting } from "./accounting.ts";
import { type FaultName, injectFault } from "./faults.ts";
import { type PhoneFleet, startPhoneFleet } from "./phones.ts";
import { rssMb, scrapeSum, startSupervised, type SupervisedService } from "./services.ts";
import { createScratchDatabase } from "../../tools/scratch-database.ts";

export interface ChaosOptions {
  run: string;
  phones: number;
  /** Positions per second offered by the whole fleet. */
  rate: number;
  /** At least this many positions are sent (the phones keep going until the faults are over, too). */
  minPositions: number;
  faults: FaultName[];
  cutSeconds: number;
  /** Resident memory bounds, MB, by process kind. */
  maxRssMb: { bridge: number; positions: number };
  /** Give up waiting for a recovery or for the drain after this long (the run then reports the failure). */
  patienceMs: number;
  log(line: string): void;
}

export interface FaultResult {
  fault: FaultName;
  target: string;
  /** Seconds since the phones started. */
  injectedAtS: number;
  /** The fault itself (a restart's own duration, a cut's length). */
  faultS: number;
  /** From the end of the fault until the backlog (acknowledged − applied − dead-lettered) was back to normal. */
  recoveryS: number | null;
}

export interface ChaosReport {
  options: Omit<ChaosOptions, "log">;
  faults: FaultResult[];
  accounting: Accounting;
  phonesDrained: boolean;
  drainS: number;
  finalLag: number | null;
  maxRssMb: Record<string, number>;
  overMemoryBound: string[];
  /** Services whose supervisor gave up before the end. */
  servicesLost: string[];
  timeline: { t: number; acked: number; applied: number; deadLettered: number; backlog: number }[];
  ok: boolean;
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(250);
  }
  return true;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { run, log } = options;
  // ---- its own database, topics and services
  const scratch = await createScratchDatabase(`chaos_${run}`);
  const dbUrl = scratch.url;
  const sql = connectDatabase(dbUrl, { max: 2 });
  await generateData(sql, {
    drivers: options.phones, restaurants: 10, customers: 10, orders: 0, mode: "truncate", seed: 11, city: "nyc",
    online: false, progress: false,
  });
  const driverIds = (await readDrivers(sql, "nyc")).map((d) => d.id);

  const topic = `bench-pos-${run}`;
  const dlq = `bench-dlq-${run}`;
  await createTopic(topic, 8);
  await createTopic(dlq, 2);
  const prefix = `bench/${run}/`;
  const pgUrl = new URL(config().databaseUrl);
  const databaseProxy = await startTcpProxy(pgUrl.hostname, Number(pgUrl.port || 5432));
  const workerDbUrl = Object.assign(new URL(serviceUrl(dbUrl, "tracking_worker")), { port: String(databaseProxy.port) });
  const common = {
    KAFKA_TOPIC: topic, KAFKA_DLQ_TOPIC: dlq, KAFKA_GROUP_ID: `bench-${run}`, MQTT_TOPIC_PREFIX: prefix,
    BRIDGE_SHARE_GROUP: `bench-${run}`, METRICS_PORT: "0", OFFLINE_AFTER: "86400",
  };
  const bridges: SupervisedService[] = [];
  const workers: SupervisedService[] = [];
  const services = () => [...bridges, ...workers];
  let phones: PhoneFleet | undefined;
  // Interrupted (Ctrl-C, a timeout): the supervisors and their children go too, never left running orphaned.
  const interrupted = (signal: NodeJS.Signals) => {
    for (const s of services()) s.proc.kill("SIGTERM");
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    for (const i of [0, 1]) {
      bridges.push(startSupervised(`bridge-${i}`, "bridge", {
        ...common, ...kafkaIdentity("test-bridge", "KAFKA_TEST_BRIDGE_PASSWORD"), BRIDGE_CLIENT_ID: `chaos-${run}-bridge-${i}`,
      }));
      workers.push(startSupervised(`positions-${i}`, "positions", {
        ...common, ...kafkaIdentity("test-worker", "KAFKA_TEST_WORKER_PASSWORD"), DATABASE_URL: workerDbUrl.toString(),
      }));
    }
    await Promise.all([
      ...bridges.map((b) => b.waitFor("mqtt connected", 120_000)),
      ...workers.map((w) => w.waitFor("partitions assign", 120_000)),
    ]);
    // Only now the phones: a bridge's shared subscription must exist first, or the broker acknowledges messages
    // nobody is subscribed to and drops them (in production the bridges' persistent sessions always exist).
    const fleet = startPhoneFleet({
      mqttUrl: process.env.MQTT_LOADGEN_URL ?? config().mqttUrl,
      driverIds,
      topicPrefix: prefix,
      clientIdPrefix: `chaos-${run}-`,
      rate: options.rate,
      origin: cityByName("nyc").hotspots[0]!,
    });
    phones = fleet;
    log(`services up: 2 bridges, 2 workers; ${options.phones} phones connecting`);

    // ---- sampling: the backlog every 500 ms, memory every second
    const started = Date.now();
    const seconds = () => (Date.now() - started) / 1000;
    const timeline: ChaosReport["timeline"] = [];
    const maxRss: Record<string, number> = {};
    let applied = 0;
    let deadLettered = 0;
    let sampling = true;
    // The dead-letter count has its own loop: reading the topic (kcat) must not slow the backlog's samples.
    const dlqCounter = (async () => {
      while (sampling) {
        const counted = await kcat(["-C", "-t", dlq, "-o", "beginning", "-e", "-q", "-f", "x"], { timeoutMs: 10_000 })
          .catch(() => undefined);
        if (counted?.code === 0) deadLettered = counted.stdout.length;
        await Bun.sleep(2_000);
      }
    })();
    const sampler = (async () => {
      let tick = 0;
      while (sampling) {
        const [count] = await sql<{ n: number }[]>`select count(*)::int as n from position_trail`.catch(() => [undefined]);
        if (count) applied = count.n;
        if (tick % 2 === 0) {
          for (const s of services()) {
            const mb = rssMb(s.childPid());
            if (mb !== undefined) maxRss[s.name] = Math.max(maxRss[s.name] ?? 0, mb);
          }
        }
        const acked = fleet.acked();
        timeline.push({ t: seconds(), acked, applied, deadLettered, backlog: acked - applied - deadLettered });
        if (tick % 20 === 0) {
          log(`t=${seconds().toFixed(0)} s: phones connected ${fleet.connected()}, sent ${fleet.sent()} (resent ${fleet.retried()}), acknowledged ` +
            `${acked}, applied ${applied}, dead-lettered ${deadLettered}, backlog ${timeline.at(-1)!.backlog}`);
        }
        tick++;
        await Bun.sleep(500);
      }
    })();
    const backlog = () => timeline.at(-1)?.backlog ?? Infinity;
    const recent = (seconds: number) => timeline.slice(-Math.max(1, Math.round(seconds * 2))).map((p) => p.backlog);
    // Steady: over the last 5 s the backlog moved by less than two seconds of traffic (on a busy machine it may sit
    // higher than on a quiet one; what matters is that it is not growing).
    const steady = () => {
      const window = recent(5);
      return window.length >= 10 && Math.max(...window) - Math.min(...window) <= 2 * options.rate;
    };
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

    // ---- faults, one at a time, each once the pipeline is steady again
    const faults: FaultResult[] = [];
    const turns = new Map<FaultName, number>();
    await until("every phone connected", () => fleet.connected() === options.phones, options.patienceMs);
    for (const fault of options.faults) {
      await until("a steady pipeline", steady, options.patienceMs);
      // Recovered = the backlog back within two seconds of traffic of where it stood before the fault.
      const baseline = median(recent(3));
      const turn = turns.get(fault) ?? 0;
      turns.set(fault, turn + 1);
      const injectedAtS = seconds();
      log(`t=${injectedAtS.toFixed(0)} s: ${fault} (backlog ${baseline})`);
      const target = await injectFault(fault, turn, {
        workers, bridges, databaseProxy, topic, cutSeconds: options.cutSeconds, log,
      });
      const faultEnd = seconds();
      // While phones are cut off nothing new is acknowledged, so a low backlog alone proves nothing: recovered also
      // needs every phone back and two seconds' worth of new acknowledgements since the fault ended.
      const ackedAtEnd = fleet.acked();
      const recovered = await until(
        "recovery",
        () => fleet.connected() === options.phones && fleet.acked() >= ackedAtEnd + options.rate * 2 &&
          backlog() <= baseline + options.rate * 2,
        options.patienceMs,
      );
      const result = {
        fault, target, injectedAtS, faultS: faultEnd - injectedAtS,
        recoveryS: recovered ? seconds() - faultEnd : null,
      };
      faults.push(result);
      log(`  ${target}: fault ${result.faultS.toFixed(1)} s, recovered in ${result.recoveryS?.toFixed(1) ?? "NOT RECOVERED"} s`);
    }

    // ---- the end: the phones stop, their outboxes drain, the pipeline settles
    await until("the minimum positions", () => fleet.sent() >= options.minPositions, options.patienceMs * 4);
    fleet.stopSending();
    const drainStart = Date.now();
    const phonesDrained = await until("outboxes drained", () => fleet.drained(), options.patienceMs);
    const lagOf = async () => {
      let total = 0;
      // A worker whose supervisor gave up is reported below (servicesLost); the lag is the live workers'.
      for (const w of workers.filter((w) => w.proc.exitCode === null)) {
        const lag = await scrapeSum(w.metricsPort(), "kafka_consumer_lag_messages");
        if (lag === undefined) return null;
        total += lag;
      }
      return total;
    };
    let stable = 0;
    let last = -1;
    await until("the pipeline settled", async () => {
      const now = applied + deadLettered;
      stable = now === last && (await lagOf()) === 0 ? stable + 1 : 0;
      last = now;
      return stable >= 8; // 2 s with nothing new and no lag
    }, options.patienceMs);
    const drainS = (Date.now() - drainStart) / 1000;
    const finalLag = await lagOf();
    sampling = false;
    await Promise.all([sampler, dlqCounter]);

    // A supervisor that exited gave up on its service (a crash loop): the fleet lost a bridge or a worker for good.
    const servicesLost = services().filter((s) => s.proc.exitCode !== null).map((s) => `${s.name} (exit ${s.proc.exitCode})`);
    const accounting = await reconcile(sql, fleet.logs(), await readTopic(dlq));
    const overMemoryBound = Object.entries(maxRss)
      .filter(([name, mb]) => mb > options.maxRssMb[name.startsWith("bridge") ? "bridge" : "positions"])
      .map(([name, mb]) => `${name} ${mb.toFixed(0)} MB`);
    const ok =
      phonesDrained && accounting.lost === 0 && accounting.appliedAndDeadLettered === 0 && accounting.neverSent === 0 &&
      accounting.stateMismatches === 0 && accounting.duplicateTransitions === 0 && finalLag === 0 &&
      overMemoryBound.length === 0 && servicesLost.length === 0 && faults.every((f) => f.recoveryS !== null);
    const { log: _log, ...recorded } = options;
    return {
      options: recorded, faults, accounting, phonesDrained, drainS, finalLag,
      maxRssMb: Object.fromEntries(Object.entries(maxRss).map(([k, v]) => [k, Math.round(v)])),
      overMemoryBound, servicesLost, timeline, ok,
    };
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    await phones?.close().catch(() => {});
    await Promise.all(services().map((s) => s.stop()));
    // Each service's output (its supervisor's and its children's), for the post-mortem of a failed run.
    const logDir = new URL("../../.stack/logs/", import.meta.url).pathname;
    mkdirSync(logDir, { recursive: true });
    for (const s of services()) writeFileSync(`${logDir}chaos-${run}-${s.name}.log`, s.output());
    await databaseProxy.close();
    await sql.end({ timeout: 5 });
    await scratch.drop().catch(() => {});
  }
}
