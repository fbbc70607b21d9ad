// lib/kafka.ts logs in as the identity config() parsed (KAFKA_USERNAME/KAFKA_PASSWORD): without one it speaks
// plaintext and the broker refuses it; as `api` it may produce positions but not dead letters. On the real broker,
// with the real client on Node (its addon cannot run in Bun).
import { expect, test } from "bun:test";
import { type KafkaSasl, parseConfig } from "../../lib/config.ts";

const OUT = new URL("../../.stack/node-test/security/", import.meta.url).pathname;
let bundle: Promise<string> | undefined;
const bundled = () =>
  (bundle ??= (async () => {
    const result = await Bun.build({
      entrypoints: [new URL("./kafka-client.node.ts", import.meta.url).pathname],
      target: "node",
      outdir: OUT,
      external: ["@confluentinc/kafka-javascript"],
    });
    if (!result.success || !result.outputs[0]) throw new Error(`bundling failed: ${result.logs.join("\n")}`);
    return result.outputs[0].path;
  })());

interface Outcome {
  user: string | null;
  connected: boolean;
  sends: Record<string, string>;
}

async function produceAs(identity: Record<string, string>, topics: string[]): Promise<Outcome> {
  const proc = Bun.spawn(["node", await bundled(), ...topics], {
    env: { ...process.env, ...identity },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  await proc.exited;
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  if (!line) throw new Error(`kafka-client.node printed no result:\n${stdout}\n${stderr}`);
  return JSON.parse(line) as Outcome;
}

test("without credentials the client speaks plaintext and never gets in", async () => {
  const outcome = await produceAs({ KAFKA_USERNAME: "", KAFKA_PASSWORD: "" }, ["driver-pos"]);
  expect(outcome).toEqual({ user: null, connected: false, sends: {} });
});

test("with a wrong password the client never gets in", async () => {
  const outcome = await produceAs({ KAFKA_USERNAME: "api", KAFKA_PASSWORD: "not-the-password" }, ["driver-pos"]);
  expect(outcome).toMatchObject({ user: "api", connected: false });
});

test("as api: positions are accepted, dead letters refused with TOPIC_AUTHORIZATION_FAILED", async () => {
  const password = process.env.KAFKA_API_PASSWORD;
  if (!password) throw new Error("KAFKA_API_PASSWORD is not set: run bin/stack up");
  const outcome = await produceAs({ KAFKA_USERNAME: "api", KAFKA_PASSWORD: password }, ["driver-pos", "driver-pos-dlq"]);
  expect(outcome.connected).toBe(true);
  expect(outcome.sends["driver-pos"]).toBe("ok");
  expect(outcome.sends["driver-pos-dlq"]).toMatch(/Topic authorization failed.*\(29\)/);
});

// The identity is parsed once with the rest of the config: both parts or neither, a mechanism Kafka knows.
test.each<[Record<string, string>, KafkaSasl | null]>([
  [{}, null],
  [{ KAFKA_USERNAME: "bridge", KAFKA_PASSWORD: "p" }, { mechanism: "SCRAM-SHA-512", username: "bridge", password: "p" }],
  [{ KAFKA_USERNAME: "api", KAFKA_PASSWORD: "p", KAFKA_SASL_MECHANISM: "scram-sha-256" },
    { mechanism: "SCRAM-SHA-256", username: "api", password: "p" }],
])("config %p → kafkaSasl %p", (env, expected) => {
  expect(parseConfig(env).kafkaSasl).toEqual(expected);
});

test.each([
  [{ KAFKA_USERNAME: "bridge" }, /KAFKA_PASSWORD: missing/],
  [{ KAFKA_PASSWORD: "p" }, /KAFKA_USERNAME: missing/],
  [{ KAFKA_USERNAME: "a b", KAFKA_PASSWORD: "p" }, /KAFKA_USERNAME: "a b"/],
  [{ KAFKA_USERNAME: "api", KAFKA_PASSWORD: "p", KAFKA_SASL_MECHANISM: "PLAIN" }, /KAFKA_SASL_MECHANISM: "PLAIN"/],
  [{ KAFKA_CLIENT_ID: "a/b" }, /KAFKA_CLIENT_ID/],
])("config %p is refused naming the variable", (env, message) => {
  expect(() => parseConfig(env as Record<string, string>)).toThrow(message);
});
