/**
 * The fleet simulator that drives the demo and the load tests: drivers report positions over MQTT while mocked apps
 * place orders through the HTTP API and walk them to delivery.
 *
 *   bun run simulate -- --drivers 2000 [--drivers-file drivers.json] [--rate-hz 0.25] [--batch 1] [--form json|compact|binary]
 *                       [--orders-per-min 60] [--api http://127.0.0.1:8000] [--duration 0] [--city nyc]
 *
 * With --sign-in every driver signs in through the API for MQTT credentials of its own and connects with them, one
 * connection each, as phones do. With --phones as well (the demo), each of those phones runs the real phone client
 * (phone/client.ts): binary fixes, sent when the mode the server pushes says (live while a customer watches, idle
 * batches while available); --phone-url picks the broker (e.g. mqtts://127.0.0.1:8883) and --ca the PEM its TLS
 * certificate chains to. Without it, drivers share connections (--per-connection) under the
 * user in --mqtt / MQTT_URL: the dev stack's loadgen or tester identity, which a production broker does not have.
 *
 * Every 5 s one line reports the offered and the broker-acknowledged rate. SIGINT/SIGTERM stop cleanly.
 * The core is a library: import { startFleet } from "sim/fleet.ts".
 */
import { parseArgs } from "node:util";
import { config } from "../lib/config.ts";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { createApiClient } from "./api-client.ts";
import { simIdentityProvider } from "./identity.ts";
import { signInFleet } from "./mqtt-sign-in.ts";
import { cityByName } from "../lib/cities.ts";
import { startOrderFlow, type OrderFlow, type OrderFlowStats } from "./order-flow.ts";
import { parsePayloadForm } from "./payload.ts";
import { startFleet, type FleetStats } from "./simulated-fleet.ts";
import { loadDriversFromDb, loadDriversFromFile, loadPlaces } from "./world.ts";

export { startFleet, FleetStopped, type Fleet, type FleetDriver, type FleetOptions, type FleetStats } from "./simulated-fleet.ts";

function positiveNumber(raw: string | undefined, name: string, fallback: number, allowZero = false): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new Error(`--${name}: "${raw}" is not a ${allowZero ? "non-negative" : "positive"} number`);
  }
  return value;
}

export function parseFleetArgs(argv: string[]) {
  const { values } = parseArgs({
    args: argv[0] === "--" ? argv.slice(1) : argv,
    options: {
      drivers: { type: "string" },
      "drivers-file": { type: "string" },
      "rate-hz": { type: "string" },
      batch: { type: "string" },
      form: { type: "string" },
      "sign-in": { type: "boolean" },
      phones: { type: "boolean" },
      "phone-url": { type: "string" },
      ca: { type: "string" },
      "orders-per-min": { type: "string" },
      api: { type: "string" },
      mqtt: { type: "string" },
      duration: { type: "string" },
      city: { type: "string" },
      seed: { type: "string" },
      "per-connection": { type: "string" },
      qos: { type: "string" },
      "report-s": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  const qos = positiveNumber(values.qos, "qos", 1, true);
  if (values.phones && !values["sign-in"]) throw new Error("--phones: phones sign in for their own credentials; add --sign-in");
  if ((values["phone-url"] !== undefined || values.ca !== undefined) && !values.phones) {
    throw new Error("--phone-url and --ca apply to --phones");
  }
  if (qos !== 0 && qos !== 1) throw new Error(`--qos: ${qos} is not 0 or 1`);
  const form = parsePayloadForm(values.form);
  return {
    help: values.help ?? false,
    /** From the database 2,000 unless told; from a file, all of them unless told. */
    drivers: values.drivers === undefined ? undefined : Math.floor(positiveNumber(values.drivers, "drivers", 0)),
    driversFile: values["drivers-file"],
    rateHz: positiveNumber(values["rate-hz"], "rate-hz", 0.25),
    batch: Math.floor(positiveNumber(values.batch, "batch", 1)),
    form,
    signIn: values["sign-in"] ?? false,
    phones: values.phones ?? false,
    phoneUrl: values["phone-url"],
    caFile: values.ca,
    ordersPerMin: positiveNumber(values["orders-per-min"], "orders-per-min", 60, true),
    apiUrl: values.api ?? config().driverApiUrl,
    mqttUrl: values.mqtt ?? config().mqttUrl,
    durationS: positiveNumber(values.duration, "duration", 0, true),
    city: cityByName(values.city ?? "nyc"),
    seed: values.seed === undefined ? undefined : Math.floor(positiveNumber(values.seed, "seed", 0, true)),
    perConnection: Math.floor(positiveNumber(values["per-connection"], "per-connection", 500)),
    qos: qos as 0 | 1,
    reportS: positiveNumber(values["report-s"], "report-s", 5),
  };
}

const perSecond = (delta: number, seconds: number) => Math.round(delta / Math.max(seconds, 1e-3));

export function formatReport(prev: FleetStats, cur: FleetStats, orders: OrderFlowStats | undefined): string {
  const seconds = cur.elapsedS - prev.elapsedS;
  const offered = perSecond(cur.offered - prev.offered, seconds);
  const sent = perSecond(cur.sent - prev.sent, seconds);
  const messages = perSecond(cur.messages - prev.messages, seconds);
  const parts = [
    `[fleet] ${Math.round(cur.elapsedS)}s ${cur.drivers} drivers on ${cur.connected}/${cur.connections} connections`,
    `offered ${offered}/s (target ${Math.round(cur.targetRate)}/s)`,
    `sent ${sent}/s (${offered > 0 ? ((100 * sent) / offered).toFixed(1) : "-"}%) in ${messages} messages/s`,
    `in flight ${cur.inFlight}${cur.buffered > 0 ? `, buffered ${cur.buffered}` : ""}` +
      `, dropped ${cur.dropped - prev.dropped}, shed ${cur.shed - prev.shed}, errors ${cur.errors}` +
      (Object.keys(cur.refused ?? {}).length > 0 ? `, refused ${JSON.stringify(cur.refused)}` : ""),
  ];
  if (cur.modes) parts.push(`modes live ${cur.modes.live} idle ${cur.modes.idle} off ${cur.modes.off}`);
  if (orders) {
    parts.push(
      `orders placed ${orders.placed} assigned ${orders.assigned} picked up ${orders.pickedUp} delivered ${orders.delivered}` +
        ` active ${orders.active} no driver ${orders.noDriver} refused ${orders.refused} failed ${orders.failed}`,
    );
  }
  return parts.join(" | ");
}

const USAGE = `usage: bun run simulate -- [--drivers N] [--drivers-file FILE] [--rate-hz 0.25] [--batch N] [--form json|compact|binary]
                          [--sign-in [--phones [--phone-url mqtts://127.0.0.1:8883] [--ca FILE]]]
                          [--orders-per-min 60] [--api URL] [--mqtt URL] [--duration S] [--city nyc|sf]
                          [--seed N] [--per-connection 500] [--qos 0|1] [--report-s 5]`;

async function main(): Promise<void> {
  let args: ReturnType<typeof parseFleetArgs>;
  try {
    args = parseFleetArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }

  let sql: Sql | undefined;
  const database = () => (sql ??= connectDatabase(config().databaseUrl, { max: 2, application: "fleet-simulator" }));
  const drivers = args.driversFile
    ? await loadDriversFromFile(args.driversFile, args.city, args.drivers ?? Number.MAX_SAFE_INTEGER)
    : await loadDriversFromDb(database(), args.city, args.drivers ?? 2_000);
  if (drivers.length === 0) throw new Error("no drivers: run `bun run generate` first (or pass --drivers-file)");
  if (args.drivers !== undefined && drivers.length < args.drivers) {
    console.warn(`[fleet] only ${drivers.length} drivers available, simulating those`);
  }

  // Phones sign in first (the API issues each its own MQTT credentials), then connect with them.
  const signedIn = args.signIn
    ? await signInFleet(createApiClient(args.apiUrl, 30_000, simIdentityProvider()), drivers.map((d) => d.id))
    : undefined;
  if (signedIn) console.log(`[fleet] ${signedIn.length} drivers signed in through ${args.apiUrl} for their MQTT credentials`);
  const fleet = await startFleet({
    drivers,
    ...(signedIn ? { driverCredentials: signedIn } : {}),
    rateHz: args.rateHz,
    batch: args.batch,
    form: args.form,
    mqttUrl: signedIn?.[0]?.mqtt_url ?? args.mqttUrl,
    city: args.city,
    qos: args.qos,
    driversPerConnection: args.perConnection,
    ...(args.seed === undefined ? {} : { seed: args.seed }),
    ...(args.phones
      ? {
          phones: {
            ...(args.phoneUrl === undefined ? {} : { url: args.phoneUrl }),
            ...(args.caFile === undefined ? {} : { ca: await Bun.file(args.caFile).text() }),
          },
        }
      : {}),
  });
  console.log(
    `[fleet] ${drivers.length} drivers at ${args.rateHz} Hz (${Math.round(drivers.length * args.rateHz)} positions/s)` +
      (args.phones
        ? `, phone clients (binary, reporting as the server's mode says), ${args.phoneUrl ?? signedIn?.[0]?.mqtt_url}`
        : `, ${args.form}${args.batch > 1 ? ` batches of ${args.batch}` : ""}, ${args.mqttUrl}`),
  );

  let orderFlow: OrderFlow | undefined;
  if (args.ordersPerMin > 0) {
    const places = await loadPlaces(database());
    if (places.customers.length === 0 || places.restaurants.length === 0) {
      console.warn("[fleet] no customers or restaurants in the database: not placing orders");
    } else {
      orderFlow = startOrderFlow({
        // Each customer, restaurant and driver calls with its own token (sim/identity.ts: the IdP stand-in).
        api: createApiClient(args.apiUrl, undefined, simIdentityProvider()),
        fleet,
        city: args.city,
        ...places,
        ordersPerMin: args.ordersPerMin,
        maxDeliveryKm: config().orderMaxDeliveryKm,
        ...(args.seed === undefined ? {} : { seed: args.seed }),
      });
      console.log(`[fleet] placing ${args.ordersPerMin} orders/min through ${args.apiUrl}`);
    }
  }

  let previous = fleet.stats();
  const reporter = setInterval(() => {
    const current = fleet.stats();
    console.log(formatReport(previous, current, orderFlow?.stats()));
    previous = current;
  }, args.reportS * 1000);

  let stopping: Promise<void> | undefined;
  const stop = (why: string) =>
    (stopping ??= (async () => {
      console.log(`[fleet] stopping (${why})`);
      clearInterval(reporter);
      await orderFlow?.stop();
      await fleet.stop();
      await sql?.end({ timeout: 5 });
      const final = fleet.stats();
      const zero = { ...final, elapsedS: 0, offered: 0, sent: 0, dropped: 0, shed: 0 };
      console.log(`${formatReport(zero, final, orderFlow?.stats())} (whole run)`);
    })());
  process.on("SIGINT", () => void stop("SIGINT").then(() => process.exit(0)));
  process.on("SIGTERM", () => void stop("SIGTERM").then(() => process.exit(0)));
  if (args.durationS > 0) setTimeout(() => void stop("duration reached").then(() => process.exit(0)), args.durationS * 1000);
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(`[fleet] failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
}
