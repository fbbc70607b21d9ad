// Kafka proves who each client is (SASL/SCRAM) and lets it touch only what infra/kafka/acls.conf grants: one row per
// principal × operation on the real broker, with kcat as the client (the forger's tool).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { KafkaSasl } from "../../lib/config.ts";
import { createTopic, deleteTopic, kcat } from "../../tools/kafka-cli.ts";

const POS = "driver-pos";
const DLQ = "driver-pos-dlq";

function user(username: string, secret: string): KafkaSasl {
  const password = process.env[secret];
  if (!password) throw new Error(`${secret} is not set: run bin/stack up`);
  return { mechanism: "SCRAM-SHA-512", username, password };
}

const PRINCIPALS = {
  admin: user("admin", "KAFKA_ADMIN_PASSWORD"),
  bridge: user("bridge", "KAFKA_BRIDGE_PASSWORD"),
  worker: user("worker", "KAFKA_WORKER_PASSWORD"),
  api: user("api", "KAFKA_API_PASSWORD"),
  // The tests' own bridge and worker (tools/pipeline.ts): PREFIXED rights on test-… names, none on production's.
  "test-bridge": user("test-bridge", "KAFKA_TEST_BRIDGE_PASSWORD"),
  "test-worker": user("test-worker", "KAFKA_TEST_WORKER_PASSWORD"),
};
type Principal = keyof typeof PRINCIPALS;

// A record nobody would apply: not a phone message, so a worker that reads it sends it to the DLQ as malformed.
// Producers are idempotent, as the services' are: InitProducerId needs IdempotentWrite on the cluster.
const FORGED = "security-test: not a position";

// A run's own topic, as tools/pipeline.ts names them.
const RUN_TOPIC = `test-pos-security-${process.pid}`;

type Operation = "produce driver-pos" | "produce driver-pos-dlq" | "read driver-pos" | "read driver-pos-dlq"
  | "read driver-pos in group position-workers" | "read driver-pos in group intruders"
  | "produce test-pos-<run>" | "read test-pos-<run> in group test-<run>";

const run = (principal: Principal, operation: Operation) => {
  const sasl = PRINCIPALS[principal];
  // Consumers start at the end and commit nothing: the test must not move a running worker group's offsets.
  const group = (name: string, topic = POS) =>
    kcat(["-X", "enable.auto.commit=false", "-X", "auto.offset.reset=latest", "-G", name, topic, "-e", "-q"], { sasl });
  switch (operation) {
    case "produce driver-pos":
      return kcat(["-X", "enable.idempotence=true", "-P", "-t", POS, "-k", `security-${principal}`], { sasl, stdin: FORGED });
    case "produce driver-pos-dlq":
      return kcat(["-X", "enable.idempotence=true", "-P", "-t", DLQ, "-k", `security-${principal}`, "-H", "reason=MALFORMED"],
        { sasl, stdin: FORGED });
    case "read driver-pos":
      return kcat(["-C", "-t", POS, "-o", "end", "-e", "-q"], { sasl });
    case "read driver-pos-dlq":
      return kcat(["-C", "-t", DLQ, "-o", "end", "-e", "-q"], { sasl });
    case "read driver-pos in group position-workers":
      return group("position-workers");
    case "read driver-pos in group intruders":
      return group("intruders");
    case "produce test-pos-<run>":
      return kcat(["-X", "enable.idempotence=true", "-P", "-t", RUN_TOPIC, "-k", `security-${principal}`], { sasl, stdin: FORGED });
    case "read test-pos-<run> in group test-<run>":
      return group(`test-security-${process.pid}`, RUN_TOPIC);
  }
};

// What each refusal looks like in librdkafka's words.
const TOPIC_REFUSED = /Topic authorization failed/;
const GROUP_REFUSED = /Group authorization failed/;

// principal × operation → allowed, or the refusal it must get. Every principal, every operation: a new right that
// slips into acls.conf turns a row red.
const TABLE: [Principal, Operation, true | RegExp][] = [
  ["admin", "produce driver-pos", true],
  ["admin", "produce driver-pos-dlq", true],
  ["admin", "read driver-pos", true],
  ["admin", "read driver-pos-dlq", true],
  ["admin", "read driver-pos in group position-workers", true],
  ["admin", "read driver-pos in group intruders", true],

  ["bridge", "produce driver-pos", true],
  ["bridge", "produce driver-pos-dlq", true],
  ["bridge", "read driver-pos", TOPIC_REFUSED],
  ["bridge", "read driver-pos-dlq", TOPIC_REFUSED],
  ["bridge", "read driver-pos in group position-workers", GROUP_REFUSED],
  ["bridge", "read driver-pos in group intruders", GROUP_REFUSED],

  ["worker", "produce driver-pos", TOPIC_REFUSED],
  ["worker", "produce driver-pos-dlq", true],
  ["worker", "read driver-pos", true],
  ["worker", "read driver-pos-dlq", TOPIC_REFUSED],
  ["worker", "read driver-pos in group position-workers", true],
  ["worker", "read driver-pos in group intruders", GROUP_REFUSED],

  ["api", "produce driver-pos", true],
  ["api", "produce driver-pos-dlq", TOPIC_REFUSED],
  ["api", "read driver-pos", TOPIC_REFUSED],
  ["api", "read driver-pos-dlq", TOPIC_REFUSED],
  ["api", "read driver-pos in group position-workers", GROUP_REFUSED],
  ["api", "read driver-pos in group intruders", GROUP_REFUSED],

  ["test-bridge", "produce test-pos-<run>", true],
  ["test-bridge", "read test-pos-<run> in group test-<run>", GROUP_REFUSED],
  ["test-bridge", "produce driver-pos", TOPIC_REFUSED],
  ["test-bridge", "read driver-pos", TOPIC_REFUSED],
  ["test-worker", "produce test-pos-<run>", TOPIC_REFUSED],
  ["test-worker", "read test-pos-<run> in group test-<run>", true],
  ["test-worker", "read driver-pos in group position-workers", GROUP_REFUSED],
  ["test-worker", "produce driver-pos-dlq", TOPIC_REFUSED],
  ["api", "produce test-pos-<run>", TOPIC_REFUSED],
  ["worker", "read test-pos-<run> in group test-<run>", GROUP_REFUSED],
];

beforeAll(() => createTopic(RUN_TOPIC, 1), 60_000);
afterAll(() => deleteTopic(RUN_TOPIC), 60_000);

describe("Kafka authenticates every client", () => {
  test("a client without credentials (plaintext) is refused", async () => {
    const result = await kcat(["-L", "-m", "5", "-t", POS], { sasl: null });
    expect(result.stdout).not.toContain(`topic "${POS}"`);
    expect(result.stderr).toMatch(/Failed to acquire metadata/);
  });

  test("a known user with a wrong password is refused", async () => {
    const result = await kcat(["-L", "-m", "5", "-t", POS], {
      sasl: { ...PRINCIPALS.bridge, password: `${PRINCIPALS.bridge.password}x` },
    });
    expect(result.stderr).toMatch(/SASL authentication error: .*invalid credentials/);
    expect(result.stdout).not.toContain(`topic "${POS}"`);
  });

  test("an unknown user is refused", async () => {
    const result = await kcat(["-L", "-m", "5", "-t", POS], { sasl: { ...PRINCIPALS.bridge, username: "mallory" } });
    expect(result.stderr).toMatch(/SASL authentication error/);
  });

  test("each service's own password logs it in", async () => {
    for (const sasl of Object.values(PRINCIPALS)) {
      const result = await kcat(["-L", "-m", "10", "-t", POS], { sasl });
      expect(result.stderr).not.toMatch(/SASL authentication error/);
      expect(result.stdout).toContain("broker 1 at");
    }
  });
});

describe("Kafka ACLs: principal × operation", () => {
  test.each(TABLE)("%s: %s → %p", async (principal, operation, expected) => {
    const result = await run(principal, operation);
    if (expected === true) {
      expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 0 });
      expect(result.stderr).not.toMatch(/authorization failed|ERROR/i);
    } else {
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(expected);
    }
  });
});
