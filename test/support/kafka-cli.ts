/**
 * Kafka from Bun test code, through kcat and Kafka's own tools: the Kafka client library only works on Node here
 * (see bin/stack), and tests need to read topics and create throwaway ones.
 */
import { readdirSync } from "node:fs";
import { config } from "../../lib/config.ts";

const brokers = () => config().kafkaBootstrapServers;

export interface DlqEntry {
  key: string;
  reason: string;
  value: string;
}

/** Every record of a topic, with its `reason` header (DLQ topics). */
export async function readTopic(topic: string): Promise<DlqEntry[]> {
  const proc = Bun.spawn(
    ["kcat", "-b", brokers(), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\\t%h\\t%s\\n---end---\\n"],
    { stdout: "pipe", stderr: "pipe" },
  );
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  return text
    .split("\n---end---\n")
    .filter((chunk) => chunk.length > 0)
    .map((chunk) => {
      const [key = "", headers = "", ...value] = chunk.split("\t");
      const reason = /(?:^|,)reason=([^,]*)/.exec(headers)?.[1] ?? "";
      return { key, reason, value: value.join("\t") };
    });
}

export async function createTopic(topic: string, partitions: number): Promise<void> {
  const kafkaDir = new URL("../../.stack/kafka/", import.meta.url).pathname;
  const libs = readdirSync(kafkaDir).find((d) => d.startsWith("libs-"));
  if (!libs) throw new Error("Kafka jars not found under .stack/kafka: run bin/stack up");
  const proc = Bun.spawn(
    ["java", "-cp", `${kafkaDir}${libs}/*`, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", brokers(),
      "--create", "--if-not-exists", "--topic", topic, "--partitions", String(partitions), "--replication-factor", "1"],
    { stdout: "pipe", stderr: "pipe" },
  );
  if ((await proc.exited) !== 0) throw new Error(`creating ${topic} failed: ${await new Response(proc.stderr).text()}`);
}
