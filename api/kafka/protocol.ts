/** The sidecar's wire: one JSON object per line, requests on its stdin, replies and events on its stdout. */
import type { KafkaMessage } from "./link.ts";

export type SidecarRequest =
  | { id: number; op: "send"; topic: string; messages: KafkaMessage[] }
  | { id: number; op: "probe"; topic: string; timeoutMs: number };

export type SidecarReply =
  | { id: number; ok: true }
  | { id: number; ok: false; error: string }
  /** The producer connected: requests may flow. */
  | { event: "ready" }
  /** The producer could not connect; the process exits next. */
  | { event: "fatal"; error: string };
