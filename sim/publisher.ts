/**
 * MQTT publishing for a simulated fleet: a pool of connections (a real fleet is many phones, and one connection per
 * few hundred simulated drivers spreads the broker's work the same way), QoS 1, and counts of what the broker
 * acknowledged. A connection with too many unacknowledged messages reports itself backed up, so the fleet sheds load
 * instead of queueing without bound.
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
}

export interface PublisherStats {
  connections: number;
  connected: number;
  /** Messages and positions the broker acknowledged (QoS 1) or that were written out (QoS 0). */
  messages: number;
  positions: number;
  inFlight: number;
  errors: number;
}

export interface Publisher {
  /** Publishes one message carrying `positions` positions; false (and nothing sent) when the connection is backed up. */
  publish(connection: number, topic: string, payload: string, positions: number): boolean;
  stats(): PublisherStats;
  /** Waits (up to timeoutMs) for outstanding acknowledgements, then disconnects. */
  close(timeoutMs?: number): Promise<void>;
}

interface Connection {
  client: MqttClient;
  inFlight: number;
}

export async function connectPublisher(options: PublisherOptions): Promise<Publisher> {
  const qos = options.qos ?? 1;
  const maxInFlight = options.maxInFlight ?? 2_000;
  const prefix = options.clientIdPrefix ?? `fleet-${process.pid}-${Date.now().toString(36)}`;
  const totals = { messages: 0, positions: 0, errors: 0 };

  const connections: Connection[] = await Promise.all(
    Array.from({ length: Math.max(1, options.connections) }, async (_, i) => {
      const client = await mqtt.connectAsync(options.mqttUrl, {
        clientId: `${prefix}-${i}`,
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
      connection.inFlight++;
      connection.client.publish(topic, payload, { qos }, (error) => {
        connection.inFlight--;
        if (error) {
          totals.errors++;
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
