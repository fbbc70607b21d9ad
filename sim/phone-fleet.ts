/**
 * The simulated fleet's phones when they run the real phone client (phone/client.ts): one MQTT 5 connection per
 * driver with its own credentials, the binary form, a topic alias, and the reporting mode the server pushes on the
 * driver's command topic (live while watched, idle batches while available, nothing while off). The fleet only takes
 * fixes; each phone decides when they go, as a driver's app does.
 */
import { createPhoneClient, type PhoneClient } from "../phone/client.ts";
import type { Fix, ReportingMode } from "../phone/reporting-policy.ts";

export interface PhoneFleetOptions {
  /** mqtts://host:8883 (TLS, with `ca`) or mqtt://host:1883. */
  url: string;
  /** PEM of the CA that signed the broker's certificate, when it is not in the platform's store. */
  ca?: string;
  /** Each driver's own MQTT credentials, in fleet order. */
  credentials: readonly { username: string; password: string; client_id: string }[];
  driverIds: readonly string[];
  topicPrefix?: string;
  /** Phones connecting at once (TLS handshakes are the broker's work). */
  connectConcurrency?: number;
}

export interface PhoneFleetStats {
  connections: number;
  connected: number;
  /** Messages and fixes the broker acknowledged. */
  messages: number;
  positions: number;
  /** Messages handed to MQTT and not yet acknowledged. */
  inFlight: number;
  /** Fixes the phones keep (idle batches) and have not handed to MQTT. */
  buffered: number;
  errors: number;
  refused: Record<string, number>;
  /** Phones per reporting mode, as the server last told them. */
  modes: Record<ReportingMode, number>;
}

export interface PhoneFleet {
  addFix(driver: number, fix: Fix): void;
  /** The app flushes what the phone keeps (the driver arrived somewhere and the server must see it). */
  flush(driver: number): void;
  stats(): PhoneFleetStats;
  /** Waits (up to timeoutMs) for the outboxes to drain, then disconnects. */
  close(timeoutMs?: number): Promise<void>;
}

export async function connectPhoneFleet(options: PhoneFleetOptions): Promise<PhoneFleet> {
  if (options.credentials.length !== options.driverIds.length) {
    throw new Error(`phones: ${options.credentials.length} credentials for ${options.driverIds.length} drivers`);
  }
  const totals = { messages: 0, positions: 0, errors: 0 };
  const refused: Record<string, number> = {};
  const phones: PhoneClient[] = options.driverIds.map((driverId, i) => {
    const credentials = options.credentials[i]!;
    return createPhoneClient({
      url: options.url,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      username: credentials.username,
      password: credentials.password,
      clientId: credentials.client_id,
      driverId,
      ...(options.topicPrefix === undefined ? {} : { topicPrefix: options.topicPrefix }),
      onAcknowledged: (entry) => {
        totals.messages++;
        totals.positions += entry.fixes;
      },
      onRefused: (_entry, code) => {
        const key = `0x${code.toString(16)}`;
        refused[key] = (refused[key] ?? 0) + 1;
      },
      onError: () => {
        totals.errors++;
      },
    });
  });

  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(options.connectConcurrency ?? 50, phones.length) }, async () => {
      while (next < phones.length) await phones[next++]!.start();
    }),
  );

  const phoneAt = (driver: number) => {
    const phone = phones[driver];
    if (!phone) throw new Error(`no phone for driver #${driver}`);
    return phone;
  };

  return {
    addFix: (driver, fix) => phoneAt(driver).addFix(fix),
    flush: (driver) => phoneAt(driver).flush(),
    stats() {
      const modes: Record<ReportingMode, number> = { live: 0, idle: 0, off: 0 };
      let connected = 0;
      let inFlight = 0;
      let buffered = 0;
      for (const phone of phones) {
        modes[phone.mode()]++;
        if (phone.mqtt?.connected) connected++;
        inFlight += phone.outbox.size();
        buffered += phone.pendingFixes();
      }
      return { connections: phones.length, connected, ...totals, inFlight, buffered, refused: { ...refused }, modes };
    },
    async close(timeoutMs = 5_000) {
      for (const phone of phones) phone.flush();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      await Promise.race([Promise.all(phones.map((p) => p.drained())), timedOut]);
      clearTimeout(timer);
      // A phone still waiting for acknowledgements: the broker is not answering; end without waiting for it.
      await Promise.all(phones.map((p) => p.stop({ force: p.outbox.size() > 0 })));
    },
  };
}
