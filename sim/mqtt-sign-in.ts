/**
 * The fleet's MQTT sign-in: each driver, with its own bearer token, asks the API (POST /drivers/{id}/mqtt-credentials,
 * through ApiClient.mqttSignIn) for MQTT credentials of its own (username = its id, which is also its client id; a
 * fresh password), then connects to the broker with them. The demo fleet signs every driver in this way, as phones do.
 */
import type { ApiClient, MqttSignIn } from "./api-client.ts";

/**
 * Signs in many drivers, `concurrency` at a time (the API coalesces concurrent sign-ins into one broker reload);
 * results in the order of `driverIds`.
 */
export async function signInFleet(
  api: Pick<ApiClient, "mqttSignIn">,
  driverIds: readonly string[],
  concurrency = 100,
): Promise<MqttSignIn[]> {
  const out: MqttSignIn[] = new Array(driverIds.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, driverIds.length) }, async () => {
      while (next < driverIds.length) {
        const i = next++;
        out[i] = await api.mqttSignIn(driverIds[i]!);
      }
    }),
  );
  return out;
}
