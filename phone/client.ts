/**
 * The phone's MQTT client: MQTT 5 (over TLS with an mqtts:// URL), a persistent session (clean: false, a session
 * expiry), a long keep-alive, QoS 1, a topic alias for the position topic, and the server's reporting mode read from
 * the driver's own retained command topic `drivers/{id}/cmd`. Fixes go through phone/reporting-policy.ts; what is
 * published stays in the outbox (phone/outbox.ts) until the broker acknowledges it.
 *
 * No Node- or Bun-only API here: mqtt.js and standard JavaScript only, so the same module could run in an app.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { encodeFixes, payloadBytes, positionTopicFor, type PayloadForm } from "./encoding.ts";
import { createMemoryOutbox, type Outbox, type OutboxEntry } from "./outbox.ts";
import {
  DEFAULT_MODE,
  DEFAULT_POLICY,
  decide,
  parseModeCommand,
  type Fix,
  type PolicySettings,
  type ReportingMode,
  type SendReason,
} from "./reporting-policy.ts";

export interface PhoneClientOptions {
  /** mqtts://host:8883 (or mqtt:// in tests). */
  url: string;
  username: string;
  password: string;
  driverId: string;
  /** Client id; the driver's id by default (identity-guard lets only that driver use it). */
  clientId?: string;
  form?: PayloadForm;
  /** CA certificate(s) to trust for TLS (PEM), when the broker's is not in the platform's store. */
  ca?: string;
  outbox?: Outbox;
  policy?: PolicySettings;
  /** Seconds. Long: a phone's radio should not wake for pings (the broker allows 1.5x before it drops the session). */
  keepaliveSeconds?: number;
  /** Seconds the broker keeps the session (and queued cmd messages) while the phone is away. */
  sessionExpirySeconds?: number;
  /** Prepended to every topic (tests' own topic roots). */
  topicPrefix?: string;
  /** Always use this mode and do not subscribe to the command topic (benchmark baselines). */
  fixedMode?: ReportingMode;
  /** Called with each message handed to MQTT (benchmarks measure with it). */
  onSend?: (sent: { fixes: readonly Fix[]; reason: SendReason; bytes: number }) => void;
  onMode?: (mode: ReportingMode) => void;
  /** Called when the broker acknowledged a message (its fixes are safe with the broker). */
  onAcknowledged?: (entry: OutboxEntry) => void;
  /**
   * Called when the broker refused a message (a PUBACK reason code >= 0x80, e.g. 0x87 not authorized): resending it
   * would be refused again, so it leaves the outbox and the app is told.
   */
  onRefused?: (entry: OutboxEntry, reasonCode: number) => void;
  /** Connection errors mqtt.js reports (it reconnects by itself); without a listener they would be thrown. */
  onError?: (error: Error) => void;
  /** Passed to mqtt.js as is (reconnectPeriod, connectTimeout …). */
  mqtt?: Partial<IClientOptions>;
}

export interface PhoneClient {
  /** Connects and subscribes to the command topic; resolves once connected. */
  start(): Promise<void>;
  /** A fix was taken: sent now or kept, as the mode says. */
  addFix(fix: Fix): void;
  /**
   * Sends the fixes kept so far now, whatever the mode (the driver acted in the app, e.g. "arrived": the server must
   * see the position that shows it). Nothing happens when no fix is kept.
   */
  flush(): void;
  mode(): ReportingMode;
  /** Fixes taken and not yet published. */
  pendingFixes(): number;
  readonly outbox: Outbox;
  /** Resolves once every outbox entry is acknowledged. */
  drained(): Promise<void>;
  stop(options?: { force?: boolean }): Promise<void>;
  readonly mqtt: MqttClient | undefined;
}

export function createPhoneClient(options: PhoneClientOptions): PhoneClient {
  const form = options.form ?? "binary";
  const policy = options.policy ?? DEFAULT_POLICY;
  const outbox = options.outbox ?? createMemoryOutbox();
  const prefix = options.topicPrefix ?? "";
  const positionTopic = positionTopicFor(options.driverId, form, prefix);
  const cmdTopic = `${prefix}drivers/${options.driverId}/cmd`;
  let mode: ReportingMode = options.fixedMode ?? DEFAULT_MODE;
  let pending: Fix[] = [];
  let lastSent: Fix | undefined;
  let client: MqttClient | undefined;
  const inFlight = new Set<number>();
  let drainWaiters: (() => void)[] = [];

  const settleDrain = () => {
    if (outbox.size() > 0) return;
    const waiters = drainWaiters;
    drainWaiters = [];
    for (const w of waiters) w();
  };

  function publish(entry: OutboxEntry) {
    if (!client || inFlight.has(entry.id)) return;
    inFlight.add(entry.id);
    // mqtt.js keeps the packet in its outgoing store until PUBACK and resends it after a reconnect; the callback
    // fires on PUBACK (or with an error only when the client is ended).
    client.publish(entry.topic, entry.payload as Buffer | string, { qos: 1 }, (error) => {
      inFlight.delete(entry.id);
      if (error) {
        const code = (error as Error & { code?: unknown }).code;
        // Ended before the PUBACK: the entry stays for the next client. Refused: resending cannot help.
        if (typeof code !== "number" || code < 0x80) return;
        outbox.remove(entry.id);
        options.onRefused?.(entry, code);
        settleDrain();
        return;
      }
      outbox.remove(entry.id);
      options.onAcknowledged?.(entry);
      settleDrain();
    });
  }

  function sendPending(reason: SendReason) {
    const fixes = pending;
    pending = [];
    lastSent = fixes.at(-1);
    const payload = encodeFixes(fixes, form);
    const entry = outbox.add(positionTopic, payload, fixes.length);
    options.onSend?.({ fixes, reason, bytes: payloadBytes(payload) });
    publish(entry);
  }

  function evaluate() {
    const decision = decide(mode, { pending, lastSent }, policy);
    if (decision.send) sendPending(decision.reason);
  }

  function setMode(next: ReportingMode) {
    if (next === mode) return;
    mode = next;
    options.onMode?.(next);
    // Switching to live flushes the batch at once; other switches take effect with the next fix.
    if (next === "live") evaluate();
  }

  return {
    outbox,
    get mqtt() {
      return client;
    },
    async start() {
      client = await mqtt.connectAsync(options.url, {
        protocolVersion: 5,
        clientId: options.clientId ?? options.driverId,
        username: options.username,
        password: options.password,
        clean: false,
        keepalive: options.keepaliveSeconds ?? 300,
        reconnectPeriod: 1_000,
        // The broker keeps the session while the phone is away; mqtt.js keeps unacknowledged QoS 1 publishes.
        properties: { sessionExpiryInterval: options.sessionExpirySeconds ?? 3_600 },
        // The ~50-byte position topic is sent once per connection, then a 2-byte alias (MQTT 5, Mosquitto >= 2.0).
        autoAssignTopicAlias: true,
        ca: options.ca,
        ...options.mqtt,
      });
      client.on("error", (error) => options.onError?.(error));
      client.on("message", (topic, payload) => {
        if (topic !== cmdTopic) return;
        const next = parseModeCommand(payload);
        if (next !== undefined) setMode(next);
      });
      // A new client object (the app restarted) publishes what an earlier one left unacknowledged.
      for (const entry of outbox.entries()) publish(entry);
      if (options.fixedMode === undefined) await client.subscribeAsync(cmdTopic, { qos: 1 });
    },
    addFix(fix) {
      pending.push(fix);
      evaluate();
    },
    flush() {
      if (pending.length > 0) sendPending("app");
    },
    mode: () => mode,
    pendingFixes: () => pending.length,
    drained: () =>
      outbox.size() === 0 ? Promise.resolve() : new Promise<void>((resolve) => drainWaiters.push(resolve)),
    async stop(stopOptions) {
      const c = client;
      client = undefined;
      await c?.endAsync(stopOptions?.force ?? false);
    },
  };
}
