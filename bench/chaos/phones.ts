/**
 * The chaos run's phones: one MQTT connection each, a persistent session, QoS 1, one fix per message. What a phone
 * has not seen acknowledged stays in its outbox (mqtt.js's outgoing store) and is sent again after every reconnect,
 * however the connection was lost. Each phone logs what the broker acknowledged: the run's ground truth.
 */
import mqtt, { type MqttClient } from "mqtt";
import { encodePositions, positionTopic } from "../../sim/payload.ts";

export interface PhoneFleetOptions {
  /** The broker, with a user allowed to publish under `topicPrefix` (the dev stack's loadgen). */
  mqttUrl: string;
  driverIds: readonly string[];
  topicPrefix: string;
  clientIdPrefix: string;
  /** Positions per second over the whole fleet. */
  rate: number;
  /** Where the phones start: each walks its own straight line from a point near here, ~5 m per fix. */
  origin: { lat: number; lon: number };
}

export interface PhoneLog {
  driverId: string;
  /** Device times (epoch ms) of the fixes this phone published, and of those the broker acknowledged. */
  sent: number[];
  acked: number[];
}

export interface PhoneFleet {
  /** Stops taking new fixes; what is still in outboxes keeps being sent. */
  stopSending(): void;
  sent(): number;
  acked(): number;
  /** Sends the MQTT client gave up on, made again from the outbox. */
  retried(): number;
  /** Phones with an open connection right now. */
  connected(): number;
  /** Every fix sent is acknowledged. */
  drained(): boolean;
  logs(): PhoneLog[];
  close(): Promise<void>;
}

export function startPhoneFleet(options: PhoneFleetOptions): PhoneFleet {
  const url = new URL(options.mqttUrl);
  const username = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  url.username = "";
  url.password = "";
  const intervalMs = (options.driverIds.length / options.rate) * 1000;
  let sending = true;
  let sentTotal = 0;
  let ackedTotal = 0;
  let retriedTotal = 0;
  let closed = false;

  const phones = options.driverIds.map((driverId, i) => {
    const log: PhoneLog = { driverId, sent: [], acked: [] };
    const client: MqttClient = mqtt.connect(url.toString(), {
      clientId: `${options.clientIdPrefix}${i}`,
      username,
      password,
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 3_600 },
      reconnectPeriod: 500,
      connectTimeout: 10_000,
      keepalive: 30,
    });
    client.on("error", () => {}); // reconnects on its own; the accounting, not the log, says what was lost
    const bearing = (i * 137.508 * Math.PI) / 180; // golden angle: phones fan out, never on top of each other
    const start = {
      lat: options.origin.lat + 0.02 * Math.sin(bearing) * ((i % 50) / 50),
      lon: options.origin.lon + 0.02 * Math.cos(bearing) * ((i % 50) / 50),
    };
    let step = 0;
    const topic = positionTopic(driverId, "json", options.topicPrefix);
    const publishNext = () => {
      if (!sending) return;
      step++;
      const tstMs = Date.now();
      const fix = {
        lat: start.lat + step * 0.000045 * Math.sin(bearing),
        lon: start.lon + step * 0.00006 * Math.cos(bearing),
        tst: tstMs / 1000,
      };
      log.sent.push(tstMs);
      sentTotal++;
      send(encodePositions([fix], "json"), tstMs);
    };
    // mqtt.js keeps an unacknowledged QoS 1 message and resends it after a reconnect, but gives some up with an
    // error (e.g. a connection refused at CONNACK); a phone's outbox does not: it sends those again a second later.
    const send = (payload: string, tstMs: number) => {
      client.publish(topic, payload, { qos: 1 }, (error) => {
        if (error) {
          retriedTotal++;
          if (!closed) setTimeout(() => send(payload, tstMs), 1_000);
          return;
        }
        log.acked.push(tstMs);
        ackedTotal++;
      });
    };
    // Spread the phones over the interval, so the broker sees a steady rate, not bursts.
    const first = setTimeout(() => {
      publishNext();
      timers.push(setInterval(publishNext, intervalMs));
    }, (i / options.driverIds.length) * intervalMs);
    const timers: Timer[] = [first];
    return { client, log, timers };
  });

  return {
    stopSending() {
      sending = false;
      for (const p of phones) for (const t of p.timers) clearInterval(t);
    },
    sent: () => sentTotal,
    retried: () => retriedTotal,
    acked: () => ackedTotal,
    connected: () => phones.filter((p) => p.client.connected).length,
    drained: () => ackedTotal === sentTotal,
    logs: () => phones.map((p) => p.log),
    async close() {
      this.stopSending();
      closed = true;
      // Session expiry 0 on DISCONNECT (MQTT 5): the broker forgets these sessions instead of keeping them an hour.
      await Promise.all(phones.map((p) => p.client.endAsync(false, { properties: { sessionExpiryInterval: 0 } })));
    },
  };
}
