/**
 * MQTT sign-in for drivers: the API vouches for a driver (its bearer token) and asks the broker's credential store
 * (lib/mqtt-credentials.ts, against Mosquitto) for a username/password that may publish only under
 * drivers/{own id}/. The API needs only issue and revoke, so tests can pass a stand-in of their own.
 */
import { t } from "elysia";
import type { MqttCredentialStore } from "../../../lib/mqtt-credentials.ts";

export type { MqttCredentials } from "../../../lib/mqtt-credentials.ts";
export type MqttCredentialIssuer = Pick<MqttCredentialStore, "issue" | "revoke">;

export const MqttSignIn = t.Object({
  username: t.String(),
  password: t.String(),
  client_id: t.String(),
  mqtt_url: t.String({ description: "Where the phone connects" }),
});
