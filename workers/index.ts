/**
 * `bun run workers [-- bridge|positions|modes …]`: the workers, supervised. All by default; name one to run it
 * alone (bin/stack starts one supervisor per service, each with only its own identity: docs/security.md).
 *
 * The services run on Node, not Bun: the Kafka client's native addon needs V8 and libuv symbols Bun does not provide
 * (confluentinc/confluent-kafka-javascript#264, oven-sh/bun#4290). This Bun process bundles each from the same
 * TypeScript for Node, starts it, restarts it when it dies (lib/supervisor.ts), forwards SIGTERM/SIGINT and exits
 * when they have stopped: 0 after a clean stop, 78 when a service refused its configuration, 1 otherwise.
 */
import { parseArgs } from "node:util";
import { bundleForNode } from "../lib/node-bundle.ts";
import { runUntilSignalled, supervise } from "../lib/supervisor.ts";
import { logger } from "./log.ts";

const SERVICES = { bridge: "bridge.ts", positions: "positions.ts", modes: "mode-publisher.ts" } as const;
type Service = keyof typeof SERVICES;
const isService = (name: string): name is Service => Object.hasOwn(SERVICES, name);

const log = logger("workers");
const { positionals } = parseArgs({ allowPositionals: true, strict: true });
const unknown = positionals.filter((name) => !isService(name));
if (unknown.length > 0) {
  log.error("unknown service", { unknown, known: Object.keys(SERVICES) });
  process.exit(2);
}
const services = positionals.length > 0 ? [...new Set(positionals as Service[])] : (Object.keys(SERVICES) as Service[]);
// The mode publisher has no Kafka client, so it runs on Bun as it is, without a Node bundle.
const ON_BUN: ReadonlySet<Service> = new Set(["modes"]);

const children = await Promise.all(
  services.map(async (name) => ({
    name,
    command: ON_BUN.has(name)
      ? [process.execPath, new URL(SERVICES[name], import.meta.url).pathname]
      : ["node", await bundleForNode(new URL(SERVICES[name], import.meta.url).pathname, "workers")],
  })),
);
runUntilSignalled(supervise(children, log), log);
