/**
 * MQTT sign-in end to end: a driver's bearer token buys MQTT credentials from the API (the real credential store
 * against the real Mosquitto), they connect and publish under the driver's own topic, and DELETE revokes them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mqtt from "mqtt";
import { config, parseMqttAdminConfig } from "../../../../lib/config.ts";
import { createMqttCredentialStore, type MqttCredentialStore } from "../../../../lib/mqtt-credentials.ts";
import { driver, OPS } from "../../support/auth.ts";
import { type Harness, startHarness } from "../../support/harness.ts";
import { seedDriver } from "../../support/seed.ts";

let h: Harness;
let store: MqttCredentialStore;
beforeAll(async () => {
  store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl });
  h = await startHarness("api_mqtt_sign_in", { mqttCredentials: store, mqttUrl: config().mqttUrl });
});
afterAll(async () => {
  await store.close();
  await h.close();
});

const connect = (signIn: { username: string; password: string; client_id: string; mqtt_url: string }) =>
  mqtt.connectAsync(signIn.mqtt_url, {
    username: signIn.username,
    password: signIn.password,
    clientId: signIn.client_id,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });

describe("POST/DELETE /drivers/{id}/mqtt-credentials", () => {
  test("the driver's credentials publish under its own topic; once revoked they no longer connect", async () => {
    const id = await seedDriver(h.sql);
    const res = await h.call("POST", `/drivers/${id}/mqtt-credentials`, undefined, { as: driver(id) });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ username: id, client_id: id });
    expect(res.body.mqtt_url).not.toContain("@"); // the API's own broker user is not handed out

    const phone = await connect(res.body);
    try {
      const ack = await phone.publishAsync(`drivers/${id}/location`, JSON.stringify({ lat: 40.7, lon: -73.9, tst: Date.now() / 1000 }), { qos: 1 });
      expect(ack).toBeDefined();
    } finally {
      await phone.endAsync();
    }

    expect((await h.call("DELETE", `/drivers/${id}/mqtt-credentials`, undefined, { as: OPS })).status).toBe(204);
    await expect(connect(res.body)).rejects.toThrow();
  }, 60_000);
});
