// The credential store's own rules; that issued credentials work at the broker is test/security/mqtt.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { pbkdf2Sync } from "node:crypto";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
import { applyChanges, createMqttCredentialStore, passwordLine } from "../../lib/mqtt-credentials.ts";

describe("applyChanges", () => {
  const file = "admin:A\nd1:OLD\nd2:B\n";
  test.each([
    ["adds a new user at the end", [["d3", "d3:C"]], "admin:A\nd1:OLD\nd2:B\nd3:C\n"],
    ["replaces a user's line (re-issue)", [["d1", "d1:NEW"]], "admin:A\nd2:B\nd1:NEW\n"],
    ["removes a revoked user", [["d2", null]], "admin:A\nd1:OLD\n"],
    ["removing an unknown user changes nothing", [["zz", null]], file],
    ["many changes at once", [["d1", null], ["d2", "d2:X"], ["d4", "d4:Y"]], "admin:A\nd2:X\nd4:Y\n"],
  ] as const)("%s", (_name, changes, expected) => {
    expect(applyChanges(file, new Map(changes as unknown as [string, string | null][]))).toBe(expected);
  });
});

test("passwordLine writes Mosquitto 2.0's $7$ form, verifiable as mosquitto verifies it", async () => {
  const line = await passwordLine("d1", "secret");
  const match = /^d1:\$7\$101\$([A-Za-z0-9+/=]{16})\$([A-Za-z0-9+/=]{88})$/.exec(line);
  expect(match).not.toBeNull();
  const hash = pbkdf2Sync("secret", Buffer.from(match![1]!, "base64"), 101, 64, "sha512").toString("base64");
  expect(hash).toBe(match![2]!);
});

describe("the store against the real broker", () => {
  // A wide window so that, even on a busy machine, every call below lands in the same one.
  const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), coalesceMs: 1_000, mqttUrl: config().mqttUrl });
  const ids = Array.from({ length: 200 }, () => crypto.randomUUID());
  afterAll(async () => {
    await store.revokeMany(ids);
    await store.close();
  });

  test("200 concurrent sign-ins share one password-file rewrite and one broker reload", async () => {
    const before = store.stats();
    const issued = await Promise.all(ids.map((id) => store.issue(id)));
    expect(new Set(issued.map((c) => c.password)).size).toBe(200);
    expect(issued.every((c, i) => c.username === ids[i] && c.client_id === ids[i])).toBe(true);
    // 200 drivers in one flush (the reload probe's fresh password rides along, not counted).
    expect(store.stats()).toEqual({ flushes: before.flushes + 1, changes: before.changes + 200 });
  });

  test("a driver id that is not a UUID is refused before anything is written", async () => {
    const before = store.stats();
    const refused = await store.issue("bridge-0").then(
      () => "issued",
      (e: { code?: string }) => e.code,
    );
    expect(refused).toBe("INVALID_ID");
    expect(store.stats()).toEqual(before);
  });
});
