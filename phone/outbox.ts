/**
 * Messages the phone handed to MQTT and the broker has not acknowledged (PUBACK) yet. mqtt.js keeps its own
 * in-memory store of unacknowledged QoS 1 packets and resends them when it reconnects (clean: false); the outbox is
 * what outlives the client object itself (the app killed and restarted, a new connection object): a new client
 * publishes everything still in it. A React Native app would back this interface with its storage; the in-memory
 * one here serves the simulator, the benchmark and tests.
 */
export interface OutboxEntry {
  readonly id: number;
  readonly topic: string;
  readonly payload: Uint8Array | string;
  /** How many fixes the message carries. */
  readonly fixes: number;
}

export interface Outbox {
  add(topic: string, payload: Uint8Array | string, fixes: number): OutboxEntry;
  /** The broker acknowledged it. */
  remove(id: number): void;
  /** Unacknowledged entries, oldest first. */
  entries(): readonly OutboxEntry[];
  size(): number;
}

export function createMemoryOutbox(): Outbox {
  const held = new Map<number, OutboxEntry>();
  let nextId = 1;
  return {
    add(topic, payload, fixes) {
      const entry = { id: nextId++, topic, payload, fixes };
      held.set(entry.id, entry);
      return entry;
    },
    remove(id) {
      held.delete(id);
    },
    entries: () => [...held.values()],
    size: () => held.size,
  };
}
