/**
 * Kafka from Bun test code, through kcat and Kafka's own tools: the Kafka client library only works on Node here
 * (see bin/stack), and tests need to read topics and create throwaway ones. Every call logs in, as the environment's
 * identity (admin, from .stack/tools.env) unless a test passes another: the broker refuses anonymous clients.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { config, type KafkaSasl } from "../lib/config.ts";

const brokers = () => config().kafkaBootstrapServers;

// Debian's kcat links librdkafka 2.0.2, whose SCRAM this broker refuses; the 2.15 that bin/stack builds for the
// Node client is ABI-compatible, so kcat runs on it.
const KCAT_LIBS = new URL("../node_modules/@confluentinc/kafka-javascript/build/deps/", import.meta.url).pathname;

// Login settings go to files of mode 600 in a private folder: a password in argv would show in `ps`.
let privateDir: string | undefined;
const written = new Map<string, string>();
function loginFile(kind: "kcat" | "java", sasl: KafkaSasl): string {
  const key = `${kind}\0${sasl.mechanism}\0${sasl.username}\0${sasl.password}`;
  const known = written.get(key);
  if (known) return known;
  if (!privateDir) {
    privateDir = mkdtempSync(join(tmpdir(), "kafka-cli-"));
    const dir = privateDir;
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  const file = join(privateDir, `${kind}-${written.size}.properties`);
  const lines =
    kind === "kcat"
      ? ["security.protocol=SASL_PLAINTEXT", `sasl.mechanisms=${sasl.mechanism}`, `sasl.username=${sasl.username}`,
        `sasl.password=${sasl.password}`]
      : ["security.protocol=SASL_PLAINTEXT", `sasl.mechanism=${sasl.mechanism}`,
        `sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${sasl.username}" password="${sasl.password}";`];
  writeFileSync(file, `${lines.join("\n")}\n`, { mode: 0o600 });
  written.set(key, file);
  return file;
}

export interface KcatResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs kcat against the broker as `sasl` (default: this process's identity; null: anonymous plaintext), at
 * `bootstrap` (default: KAFKA_BOOTSTRAP_SERVERS; another cluster, e.g. a test's own, bin/stack kafka-cluster).
 */
export async function kcat(
  args: string[],
  options: { sasl?: KafkaSasl | null; stdin?: string; timeoutMs?: number; bootstrap?: string } = {},
): Promise<KcatResult> {
  const sasl = options.sasl === undefined ? config().kafkaSasl : options.sasl;
  const login = sasl ? ["-F", loginFile("kcat", sasl)] : [];
  const proc = Bun.spawn(["kcat", "-b", options.bootstrap ?? brokers(), ...login, ...args], {
    env: { ...process.env, LD_LIBRARY_PATH: KCAT_LIBS },
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(), options.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export interface DlqEntry {
  key: string;
  /** The `reason` header (DLQ topics), "" when absent. */
  reason: string;
  /** The `refused` header (which positions of the message were refused, and why), "" when absent. */
  refused: string;
  headers: Record<string, string>;
  value: string;
}

/** kcat's `%h`: `name=value` pairs joined by commas (a value may hold commas; a name is a plain word). */
function parseHeaders(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const pair of text.split(/,(?=[\w.-]+=)/)) {
    const at = pair.indexOf("=");
    if (at > 0) out[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return out;
}

/** Every record of a topic, with its `reason` header (DLQ topics). */
export async function readTopic(topic: string, options: { bootstrap?: string } = {}): Promise<DlqEntry[]> {
  const { code, stdout, stderr } = await kcat(
    ["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\\t%h\\t%s\\n---end---\\n"],
    options,
  );
  if (code !== 0) throw new Error(`reading ${topic} failed (${code}): ${stderr}`);
  return stdout
    .split("\n---end---\n")
    .filter((chunk) => chunk.length > 0)
    .map((chunk) => {
      const [key = "", headerText = "", ...value] = chunk.split("\t");
      const headers = parseHeaders(headerText);
      return { key, reason: headers.reason ?? "", refused: headers.refused ?? "", headers, value: value.join("\t") };
    });
}

/** Kafka's TopicCommand (`kafka-topics`), logged in as this process's identity. */
export async function topicCommand(args: string[]): Promise<KcatResult> {
  const kafkaDir = new URL("../.stack/kafka/", import.meta.url).pathname;
  const libs = readdirSync(kafkaDir).find((d) => d.startsWith("libs-"));
  if (!libs) throw new Error("Kafka jars not found under .stack/kafka: run bin/stack up");
  const sasl = config().kafkaSasl;
  const login = sasl ? ["--command-config", loginFile("java", sasl)] : [];
  const proc = Bun.spawn(
    // A short-lived JVM: the quick compiler and the simplest collector halve its start-up CPU (as bin/stack's tools).
    ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", `${kafkaDir}${libs}/*`,
      "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", brokers(), ...login, ...args],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Without a replication factor, the brokers' default: 1 on the single broker, 3 on a 3-node cluster. */
export async function createTopic(topic: string, partitions: number, replicationFactor?: number): Promise<void> {
  const { code, stdout, stderr } = await topicCommand([
    "--create", "--if-not-exists", "--topic", topic, "--partitions", String(partitions),
    ...(replicationFactor === undefined ? [] : ["--replication-factor", String(replicationFactor)]),
  ]);
  // TopicCommand prints its own errors on stdout.
  if (code !== 0) throw new Error(`creating ${topic} failed (${code}): ${stdout}${stderr}`);
}

export async function deleteTopic(topic: string): Promise<void> {
  const { code, stderr } = await topicCommand(["--delete", "--if-exists", "--topic", topic]);
  if (code !== 0) throw new Error(`deleting ${topic} failed: ${stderr}`);
}
