/**
 * MQTT publishing for a simulated fleet: a pool of connections (a real fleet is many phones, and one connection per
 * few hundred simulated drivers spreads the broker's work the same way), QoS 1, and counts of what the broker
 * acknowledged. A connection with too many unacknowledged messages reports itself backed up, so the fleet sheds load
 * instead of queueing without bound.
 *
 * Connections authenticate: with the user in `mqttUrl` (the dev stack's loadgen or tester identity, many drivers per
 * connection), or one driver per connection with `credentials(i)` (what real phones do, after signing in). MQTT 5, so
 * the broker's refusals arrive as PUBACK reason codes (0x87 not authorized, 0x97 quota exceeded, ...) and are counted.
 */
import mqtt, { type MqttClient } from "mqtt";

export interface PublisherOptions {
  mqttUrl: string;
  connections: number;
  clientIdPrefix?: string;
  qos?: 0 | 1;
  /** Unacknowledged messages per connection before it counts as backed up. */
  maxInFlight?: number;
  connectTimeoutMs?: number;
  /** Per-connection identity (a driver's own MQTT credentials); default: the user in mqttUrl. */
  credentials?: (connection: number) => { username: string; password: string; clientId: string };
  /**
   * The broker's payload limit (identity-guard's plugin_opt_max_payload in infra/mosquitto/mosquitto.conf, 256 KiB):
   * larger messages are refused here and counted as `oversized` (see below).
   */
  maxMessageBytes?: number;
  protocolVersion?: 4 | 5;
}

export interface PublisherStats {
  connections: number;
  connected: number;
  /** Messages and positions the broker acknowledged (QoS 1) or that were written out (QoS 0). */
  messages: number;
  positions: number;
  inFlight: number;
  errors: number;
  /** Refused PUBACKs by reason code, e.g. {"0x87": 3}; plus "oversized" for messages never sent (see maxMessageBytes). */
  refused: Record<string, number>;
}

export interface Publisher {
  /** Publishes one message carrying `positions` positions; false (and nothing sent) when the connection is backed up. */
  publish(connection: number, topic: string, payload: string | Uint8Array, positions: number): boolean;
  stats(): PublisherStats;
  /** Waits (up to timeoutMs) for outstanding acknowledgements, then disconnects. */
  close(timeoutMs?: number): Promise<void>;
}

/** identity-guard's plugin_opt_max_payload (infra/mosquitto/mosquitto.conf); a test keeps the two equal. */
export const BROKER_MAX_PAYLOAD_BYTES = 262_144;

interface Connection {
  client: MqttClient;
  inFlight: number;
}

/** mqtt.js lets a user in the URL win over the username/password options. */
function withoutUser(raw: string): string {
  const u = new URL(raw);
  u.username = "";
  u.password = "";
  return u.toString();
}

export async function connectPublisher(options: PublisherOptions): Promise<Publisher> {
  const qos = options.qos ?? 1;
  const maxInFlight = options.maxInFlight ?? 2_000;
  const prefix = options.clientIdPrefix ?? `fleet-${process.pid}-${Date.now().toString(36)}`;
  const totals = { messages: 0, positions: 0, errors: 0 };
  const refused: Record<string, number> = {};
  const countRefusal = (key: string) => {
    refused[key] = (refused[key] ?? 0) + 1;
  };
  // The broker (identity-guard) refuses an oversized PUBLISH with PUBACK 0x87, the same code as a forbidden topic, and
  // counts it on $SYS/identity-guard/oversized. Checking the same limit here keeps the simulator's count apart
  // (`oversized`, not `0x87`) and does not ship a message the broker will refuse. Keep it equal to the broker's.
  const maxMessageBytes = options.maxMessageBytes ?? BROKER_MAX_PAYLOAD_BYTES;

  const connections: Connection[] = await Promise.all(
    Array.from({ length: Math.max(1, options.connections) }, async (_, i) => {
      const identity = options.credentials?.(i);
      const client = await mqtt.connectAsync(identity ? withoutUser(options.mqttUrl) : options.mqttUrl, {
        clientId: identity?.clientId ?? `${prefix}-${i}`,
        ...(identity ? { username: identity.username, password: identity.password } : {}),
        protocolVersion: options.protocolVersion ?? 5,
        clean: true,
        reconnectPeriod: 1_000,
        connectTimeout: options.connectTimeoutMs ?? 10_000,
      });
      // mqtt.js emits 'error' on failures it also reports per publish; an unhandled 'error' event would kill the process.
      client.on("error", () => {
        totals.errors++;
      });
      return { client, inFlight: 0 };
    }),
  );

  return {
    publish(index, topic, payload, positions) {
      const connection = connections[index % connections.length]!;
      if (connection.inFlight >= maxInFlight) return false;
      // Text as it is (mqtt.js encodes it); bytes as a Buffer over the same memory, no copy.
      const body = typeof payload === "string" ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
      if (Buffer.byteLength(body) > maxMessageBytes) {
        countRefusal("oversized");
        return false;
      }
      connection.inFlight++;
      connection.client.publish(topic, body, { qos }, (error) => {
        connection.inFlight--;
        if (error) {
          const code = (error as Error & { code?: number }).code;
          if (typeof code === "number" && code >= 0x80) countRefusal(`0x${code.toString(16)}`);
          else totals.errors++;
          return;
        }
        totals.messages++;
        totals.positions += positions;
      });
      return true;
    },
    stats() {
      return {
        connections: connections.length,
        connected: connections.filter((c) => c.client.connected).length,
        ...totals,
        refused: { ...refused },
        inFlight: connections.reduce((n, c) => n + c.inFlight, 0),
      };
    },
    async close(timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (connections.some((c) => c.inFlight > 0) && Date.now() < deadline) await Bun.sleep(20);
      // Forcing the end of a connection that still waits for acknowledgements: the broker is not answering.
      await Promise.all(connections.map((c) => c.client.endAsync(c.inFlight > 0)));
    },
  };
}
