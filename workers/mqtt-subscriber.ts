/**
 * A minimal MQTT 3.1.1 subscriber (mqtt-packet over a TCP socket) that acknowledges QoS 1 messages only when the
 * caller says the message is safe, but keeps reading meanwhile: PUBACKs go out in arrival order (as MQTT requires)
 * as soon as every earlier message is done. mqtt.js cannot do this: with manual acks it reads the next packet only
 * after the previous one was acknowledged, which caps one connection at one Kafka round trip per message.
 *
 * Next to the data topics it can follow a few literal side topics (e.g. the broker's $SYS/identity-guard/oversized
 * counter) at QoS 0, whose messages go to their own callback and never to onMessage.
 */
import { connect, type Socket } from "node:net";
import mqttPacket, { type IPublishPacket, type Packet } from "mqtt-packet";

export interface SubscriberOptions {
  url: string;
  clientId: string;
  topics: string[];
  /** Called for every message; the returned promise resolving means "safe, acknowledge". Rejection = no ack. */
  onMessage(topic: string, payload: Buffer): Promise<void>;
  /**
   * Literal topics (no wildcard, no $share) subscribed at QoS 0 next to `topics`: their messages go to onSideMessage,
   * never to onMessage. A refused side topic is reported (onProblem) but does not make the subscriber unready: the
   * data topics are what the process is for.
   */
  sideTopics?: string[];
  onSideMessage?(topic: string, payload: Buffer): void;
  /** Stop reading from the socket while this many messages are unacknowledged (bounded memory). */
  maxInFlight?: number;
  keepaliveSeconds?: number;
  onStatus?(event: "connected" | "disconnected", detail?: string): void;
  /**
   * Something the operator must see: the broker refused our CONNECT (its CONNACK code; we retry with backoff), refused
   * a subscription (SUBACK 0x80: we would run without messages, so the process reports itself not ready), or the
   * socket failed.
   */
  onProblem?(kind: SubscriberProblem, detail: string): void;
}

export type SubscriberProblem =
  | "connect_refused"
  | "subscribe_refused"
  | "socket_error"
  // a QoS 0 message the handler failed on: the broker will not resend it, so it is counted and logged, never silent
  | "qos0_message_lost"
  // the side-topic handler threw: information only, the data topics keep their connection
  | "side_handler_error";

/** MQTT 3.1.1 CONNACK return codes. */
const CONNACK_CODES: Record<number, string> = {
  1: "unacceptable protocol version",
  2: "identifier rejected",
  3: "server unavailable",
  4: "bad user name or password",
  5: "not authorized",
};

export interface Subscriber {
  inFlight(): number;
  /** Connected, and the broker granted every subscription. */
  subscribed(): boolean;
  close(): Promise<void>;
}

interface Slot {
  messageId: number;
  done: boolean;
  /** The connection it arrived on; its acknowledgement means nothing on a later one. */
  session: number;
}

export function startSubscriber(options: SubscriberOptions): Subscriber {
  const url = new URL(options.url);
  if (url.protocol !== "mqtt:" && url.protocol !== "tcp:") {
    throw new Error(`the bridge speaks MQTT over plain TCP only; ${url.protocol} in ${options.url} is not supported`);
  }
  const maxInFlight = options.maxInFlight ?? 20_000;
  const sideTopics = options.sideTopics ?? [];
  for (const t of sideTopics) {
    if (t.startsWith("$share/") || /[+#]/.test(t)) throw new Error(`side topic ${t} must be a literal topic`);
  }
  const keepalive = options.keepaliveSeconds ?? 30;
  let socket: Socket | undefined;
  let closing = false;
  let pending: Slot[] = [];
  let paused = false;
  let ping: ReturnType<typeof setInterval> | undefined;
  let reconnectDelay = 100;
  let session = 0;
  let granted = false;

  const send = (packet: Packet) => socket?.write(mqttPacket.generate(packet));

  // pending[head..] are unacknowledged, in arrival order; a moving head instead of shift() keeps a flush O(acks).
  let head = 0;
  const unacked = () => pending.length - head;

  // Deliveries complete in bursts; one flush per turn of the event loop acknowledges the whole burst at once.
  let flushScheduled = false;
  function scheduleFlush() {
    if (flushScheduled) return;
    flushScheduled = true;
    setImmediate(() => {
      flushScheduled = false;
      flushAcks();
    });
  }

  function flushAcks() {
    let done = head;
    while (done < pending.length && pending[done]!.done) done++;
    // One write for the whole run of acknowledgements, not one syscall each. A PUBACK is four bytes (MQTT 3.1.1
    // 3.4: type 4, remaining length 2, the packet id), written here rather than through mqtt-packet's generate,
    // which built an object and a buffer per message (the bridge's hot path, docs/steady-state.md).
    if (done > head) {
      const acks = Buffer.allocUnsafe(4 * (done - head));
      for (let at = 0; head < done; head++, at += 4) {
        const id = pending[head]!.messageId;
        acks[at] = 0x40;
        acks[at + 1] = 0x02;
        acks[at + 2] = id >> 8;
        acks[at + 3] = id & 0xff;
      }
      socket?.write(acks);
    }
    if (head > 4_096 && head * 2 > pending.length) {
      pending = pending.slice(head);
      head = 0;
    }
    if (paused && unacked() < maxInFlight / 2) {
      paused = false;
      socket?.resume();
    }
  }

  function onSidePublish(packet: IPublishPacket, payload: Buffer) {
    try {
      options.onSideMessage?.(packet.topic, payload);
    } catch (error) {
      // A side message is information only; a failing handler must not cost the data topics their connection.
      options.onProblem?.("side_handler_error", `${packet.topic}: ${String(error)}`);
    }
    // Subscribed at QoS 0, so the broker sends QoS 0; acknowledge in order all the same if it ever does not.
    if (packet.qos === 1) {
      pending.push({ messageId: packet.messageId!, done: true, session });
      scheduleFlush();
    }
  }

  function onPublish(packet: IPublishPacket) {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (sideTopics.includes(packet.topic)) {
      onSidePublish(packet, payload);
      return;
    }
    if (packet.qos === 0) {
      options.onMessage(packet.topic, payload).catch((error: unknown) =>
        options.onProblem?.("qos0_message_lost", `${packet.topic}: ${String(error)}`),
      );
      return;
    }
    const slot: Slot = { messageId: packet.messageId!, done: false, session };
    pending.push(slot);
    if (unacked() >= maxInFlight && !paused) {
      paused = true;
      socket?.pause();
    }
    options.onMessage(packet.topic, payload).then(
      () => {
        // A reconnect started a new session: the broker redelivers what this one did not acknowledge.
        if (slot.session !== session) return;
        slot.done = true;
        scheduleFlush();
      },
      () => {
        // A failure from an earlier connection means nothing for this one (the broker redelivered that message).
        if (slot.session !== session) return;
        // Not acknowledged: the broker redelivers it after a reconnect. Drop the connection so that happens now.
        socket?.destroy(new Error("message could not be made safe; reconnecting for redelivery"));
      },
    );
  }

  function open() {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const s = connect(Number(url.port || 1883), url.hostname);
    socket = s;
    session++;
    pending = [];
    head = 0;
    paused = false;
    granted = false;
    s.setNoDelay(true);
    s.on("connect", () => {
      send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: options.clientId,
        // A persistent session: while we are away the broker keeps our share of QoS 1 messages.
        clean: false,
        keepalive,
        ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
        ...(url.password ? { password: Buffer.from(decodeURIComponent(url.password)) } : {}),
      });
    });
    let lastHeard = Date.now();
    let refused = false;
    s.on("data", (chunk: Buffer) => {
      lastHeard = Date.now();
      parser.parse(chunk);
    });
    parser.on("packet", (packet: Packet) => {
      switch (packet.cmd) {
        case "connack":
          if (packet.returnCode !== 0) {
            const code = packet.returnCode ?? -1;
            options.onProblem?.("connect_refused", `CONNACK ${code} (${CONNACK_CODES[code] ?? "unknown"}); retrying with backoff`);
            refused = true;
            s.destroy();
            return;
          }
          reconnectDelay = 100;
          send({
            cmd: "subscribe",
            messageId: 1,
            subscriptions: [
              ...options.topics.map((topic) => ({ topic, qos: 1 as const })),
              ...sideTopics.map((topic) => ({ topic, qos: 0 as const })),
            ],
          });
          ping = setInterval(() => {
            // A half-open connection never errors by itself: no answer to our pings within 1.5 keepalives ends it.
            if (Date.now() - lastHeard > keepalive * 1500) s.destroy(new Error("broker silent; reconnecting"));
            else send({ cmd: "pingreq" });
          }, (keepalive * 1000) / 2);
          options.onStatus?.("connected");
          break;
        case "publish":
          onPublish(packet);
          break;
        case "suback": {
          const refused = (i: number) => ((packet.granted[i] as number) ?? 0x80) >= 0x80;
          const refusedTopics = options.topics.filter((_, i) => refused(i));
          granted = refusedTopics.length === 0;
          if (!granted) options.onProblem?.("subscribe_refused", `SUBACK 0x80 for ${refusedTopics.join(", ")}`);
          const refusedSide = sideTopics.filter((_, i) => refused(options.topics.length + i));
          if (refusedSide.length > 0) {
            options.onProblem?.("subscribe_refused", `SUBACK 0x80 for ${refusedSide.join(", ")} (side topic)`);
          }
          break;
        }
        default:
          break;
      }
    });
    parser.on("error", (err) => s.destroy(err));
    s.on("error", (err) => options.onProblem?.("socket_error", err.message));
    s.on("close", () => {
      clearInterval(ping);
      granted = false;
      // A refused CONNECT is not helped by retrying at once (a wrong password, a revoked user): back off.
      if (refused) reconnectDelay = Math.max(reconnectDelay, 1_000);
      options.onStatus?.("disconnected");
      if (!closing) {
        setTimeout(open, reconnectDelay);
        reconnectDelay = Math.min(reconnectDelay * 2, 5_000);
      }
    });
  }

  open();
  return {
    inFlight: unacked,
    subscribed: () => granted,
    async close() {
      closing = true;
      // Wait (bounded) for in-flight messages so their acks go out before the disconnect.
      const deadline = Date.now() + 10_000;
      while (pending.slice(head).some((s) => !s.done) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      flushAcks();
      send({ cmd: "disconnect" });
      socket?.end();
    },
  };
}
