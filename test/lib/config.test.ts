import { expect, test } from "bun:test";
import { AppError } from "../../lib/errors.ts";
import { parseAuthConfig, parseConfig } from "../../lib/config.ts";

test("defaults follow DESIGN.md", () => {
  const c = parseConfig({});
  expect(c.databaseUrl).toBe("postgresql://postgres:postgres@127.0.0.1:5432/food_delivery");
  expect(c.kafkaTopic).toBe("driver-pos");
  expect(c.apiPort).toBe(8000);
  expect(c.h3Resolution).toBe(9);
  expect(c.offlineAfterSeconds).toBe(60);
  expect(Object.isFrozen(c)).toBe(true);
});

test.each([
  ["DATABASE_URL", "not a url", /DATABASE_URL: "not a url" is not a URL/],
  ["DATABASE_URL", "mysql://x@h/db", /DATABASE_URL: protocol "mysql:"/],
  ["KAFKA_BOOTSTRAP_SERVERS", "localhost", /KAFKA_BOOTSTRAP_SERVERS: "localhost" is not host:port/],
  ["KAFKA_TOPIC", "bad topic!", /KAFKA_TOPIC/],
  ["API_PORT", "80a", /API_PORT: "80a" is not a whole number/],
  ["H3_RESOLUTION", "16", /H3_RESOLUTION: 16 is outside 0..15/],
  ["OFFLINE_AFTER", "0", /OFFLINE_AFTER: 0 is outside/],
  ["MQTT_URL", "http://x:1883", /MQTT_URL: protocol "http:"/],
  ["API_DB_POOL_MAX", "0", /API_DB_POOL_MAX: 0 is outside 1..200/],
])("%s=%p is refused naming the variable", (name, value, message) => {
  let caught: unknown;
  try {
    parseConfig({ [name]: value });
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(AppError);
  expect((caught as AppError).code).toBe("CONFIG_INVALID");
  expect((caught as AppError).message).toMatch(message);
});

test("API_DB_POOL_MAX: each API process's request pool, 20 unless configured", () => {
  expect(parseConfig({}).apiDbPoolMax).toBe(20);
  expect(parseConfig({ API_DB_POOL_MAX: "8" }).apiDbPoolMax).toBe(8);
});

test("API_HOST: loopback unless configured", () => {
  expect(parseConfig({}).apiHost).toBe("127.0.0.1");
  expect(parseConfig({ API_HOST: "0.0.0.0" }).apiHost).toBe("0.0.0.0");
  expect(() => parseConfig({ API_HOST: "a host" })).toThrow(/API_HOST/);
});

test("API_TLS_CERT_FILE/API_TLS_KEY_FILE: both or neither, each readable", () => {
  const file = new URL("../../package.json", import.meta.url).pathname;
  expect(parseConfig({}).apiTls).toBeNull();
  expect(parseConfig({ API_TLS_CERT_FILE: file, API_TLS_KEY_FILE: file }).apiTls).toEqual({ certFile: file, keyFile: file });
  expect(() => parseConfig({ API_TLS_CERT_FILE: file })).toThrow(/API_TLS_KEY_FILE: must be set/);
  expect(() => parseConfig({ API_TLS_KEY_FILE: file })).toThrow(/API_TLS_CERT_FILE: must be set/);
  expect(() => parseConfig({ API_TLS_CERT_FILE: file, API_TLS_KEY_FILE: "/nonexistent/key.pem" })).toThrow(/API_TLS_KEY_FILE: cannot read/);
});

const SECRET = "a".repeat(48);
test("auth: the secret comes from the environment only, with defaults for issuer, audience and link lifetime", () => {
  expect(parseAuthConfig({ AUTH_TOKEN_SECRET: SECRET })).toEqual({
    tokenSecret: SECRET,
    previousTokenSecret: undefined,
    issuer: "driver-tracking-idp",
    audience: "driver-tracking-api",
    trackingLinkTtlSeconds: 6 * 3600,
    clockToleranceSeconds: 30,
  });
});

test.each([
  [{}, /AUTH_TOKEN_SECRET: missing/],
  [{ AUTH_TOKEN_SECRET: "short" }, /AUTH_TOKEN_SECRET: too short/],
  [{ AUTH_TOKEN_SECRET: SECRET, AUTH_TOKEN_SECRET_PREVIOUS: "short" }, /AUTH_TOKEN_SECRET_PREVIOUS: too short/],
  [{ AUTH_TOKEN_SECRET: SECRET, AUTH_TRACKING_LINK_TTL: "10" }, /AUTH_TRACKING_LINK_TTL: 10 is outside/],
])("auth config %p is refused naming the variable", (env, message) => {
  expect(() => parseAuthConfig(env as Record<string, string>)).toThrow(message);
});
