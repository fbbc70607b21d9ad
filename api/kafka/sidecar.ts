/**
 * Runs on Node (bundled and started by sidecar-client.ts): the API's Kafka producer, from lib/kafka.ts, driven over
 * stdin/stdout. Ends when stdin closes (its parent stopped or died): flushes what it holds, disconnects, exits.
 */
import { createInterface } from "node:readline";
import { config } from "../../lib/config.ts";
import { createProducer } from "../../lib/kafka.ts";
import { kafkaLinkFromProducer } from "./link.ts";
import type { SidecarReply, SidecarRequest } from "./protocol.ts";

// stdout is the protocol: anything a library logs goes to stderr.
console.log = console.error;
console.info = console.error;
const reply = (message: SidecarReply) => process.stdout.write(`${JSON.stringify(message)}\n`);
const describe = (error: unknown) => (error instanceof Error ? error.message : String(error));

// Its identity (KAFKA_USERNAME/KAFKA_PASSWORD, the `api` user under bin/stack) and client id come from the
// environment its parent passes (sidecar-client.ts), parsed once like every process's.
const producer = createProducer(config().kafkaBootstrapServers, config().kafkaClientId);
const link = kafkaLinkFromProducer(producer);
let connected = false;

async function handle(request: SidecarRequest) {
  try {
    if (!connected) throw new Error("the producer is not connected yet");
    if (request.op === "send") await link.send(request.topic, request.messages);
    else await link.probe(request.topic, request.timeoutMs);
    reply({ id: request.id, ok: true });
  } catch (error) {
    reply({ id: request.id, ok: false, error: describe(error) });
  }
}

// Listening before connecting: a parent that gives up on a broker that never answers must still be able to stop us.
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  let request: SidecarRequest;
  try {
    request = JSON.parse(line) as SidecarRequest;
  } catch {
    console.error(`[kafka-sidecar] ignoring a line that is not JSON: ${line.slice(0, 80)}`);
    return;
  }
  void handle(request);
});
lines.on("close", async () => {
  if (!connected) {
    // Nothing to flush; a normal exit would wait for librdkafka's threads, still retrying the broker.
    process.kill(process.pid, "SIGKILL");
  }
  await producer.flush({ timeout: 5_000 }).catch(() => {});
  await link.close();
  await producer.disconnect().catch(() => {});
  process.exit(0);
});

try {
  await producer.connect();
  connected = true;
  reply({ event: "ready" });
} catch (error) {
  reply({ event: "fatal", error: describe(error) });
  process.exit(1);
}
