// The subscriber's acknowledgements on the wire, against a scripted broker (a node:net server speaking MQTT 3.1.1
// through mqtt-packet): each PUBACK is exactly its four bytes (0x40 0x02 and the packet id, high byte first), they
// go out in arrival order however the handlers finish, none before every earlier message is safe, and a run of
// them leaves in one write.
import { afterAll, expect, test } from "bun:test";
import { createServer, type Socket } from "node:net";
import mqttPacket, { type Packet } from "mqtt-packet";
import { startSubscriber, type Subscriber } from "../../workers/mqtt-subscriber.ts";
import { waitFor } from "../api/support/wait.ts";

const IDS = [1, 2, 300, 65_535];
const received: Buffer[] = [];
let afterSuback = false;
let client: Socket | undefined;
const server = createServer((socket) => {
  client = socket;
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  socket.on("data", (chunk: Buffer) => {
    if (afterSuback) received.push(Buffer.from(chunk));
    else parser.parse(chunk);
  });
  parser.on("packet", (packet: Packet) => {
    if (packet.cmd === "connect") socket.write(mqttPacket.generate({ cmd: "connack", returnCode: 0, sessionPresent: false }));
    if (packet.cmd === "subscribe") {
      afterSuback = true;
      socket.write(mqttPacket.generate({ cmd: "suback", messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) }));
    }
  });
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const port = (server.address() as { port: number }).port;
let subscriber: Subscriber | undefined;
afterAll(async () => {
  client?.destroy();
  server.close();
});

test("PUBACKs: four bytes each, in arrival order, none before every earlier message is safe", async () => {
  const release = new Map<string, () => void>();
  const arrived: string[] = [];
  subscriber = startSubscriber({
    url: `mqtt://127.0.0.1:${port}`,
    clientId: "acks-test",
    topics: ["t/#"],
    onMessage: (topic) =>
      new Promise<void>((resolve) => {
        arrived.push(topic);
        release.set(topic, resolve);
      }),
  });
  await waitFor("the subscription", () => subscriber!.subscribed());
  for (const id of IDS) {
    client!.write(mqttPacket.generate({ cmd: "publish", topic: `t/${id}`, payload: Buffer.from("x"), qos: 1, messageId: id, retain: false, dup: false }));
  }
  await waitFor("every message handed over", () => arrived.length === IDS.length);

  // The later ones are safe first: nothing may be acknowledged while the first is not.
  for (const id of IDS.slice(1)) release.get(`t/${id}`)!();
  await Bun.sleep(0); // let any (wrong) flush run: a condition would need an ack to wait for, and none must come
  await new Promise((resolve) => setImmediate(resolve));
  expect(Buffer.concat(received).length).toBe(0);
  expect(subscriber.inFlight()).toBe(IDS.length);

  release.get(`t/${IDS[0]}`)!();
  await waitFor("the four acknowledgements", () => Buffer.concat(received).length >= 4 * IDS.length);
  const expected = Buffer.from(IDS.flatMap((id) => [0x40, 0x02, id >> 8, id & 0xff]));
  expect(Buffer.concat(received)).toEqual(expected);
  expect(received.length).toBe(1); // one write for the whole run
  expect(subscriber.inFlight()).toBe(0);
  await subscriber.close();
});
