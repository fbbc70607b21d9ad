/**
 * The Bun side of the Kafka sidecar: bundles sidecar.ts for Node, runs it as a child process, and matches replies
 * to requests by id. The API starts and answers its other routes while Kafka is away: sends fail fast (503) until
 * the sidecar reports `ready`, and a sidecar that exits is started again, with a growing pause.
 */
import { config } from "../../lib/config.ts";
import { bundleForNode } from "../../lib/node-bundle.ts";
import type { KafkaLink, KafkaMessage } from "./link.ts";
import type { SidecarReply, SidecarRequest } from "./protocol.ts";

const ENTRY = new URL("./sidecar.ts", import.meta.url).pathname;

let bundled: Promise<string> | undefined;
function bundleSidecar(): Promise<string> {
  bundled ??= (async () => bundleForNode(ENTRY, "api"))().catch((error: unknown) => {
    bundled = undefined;
    throw error;
  });
  return bundled;
}

/**
 * What the sidecar may see of the API's environment: the runtime's basics and the Kafka settings, never the API's
 * token secret, database URL or MQTT admin password.
 */
export function sidecarEnvironment(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && (name.startsWith("KAFKA_") || ["PATH", "HOME", "TZ", "LANG", "NODE_ENV"].includes(name))) {
      out[name] = value;
    }
  }
  return out;
}

export type SidecarState = "starting" | "ready" | "down" | "closed";

export interface KafkaSidecar extends KafkaLink {
  readonly state: SidecarState;
  /** The Node process's id while one runs. */
  readonly pid: number | undefined;
  /** Resolves once the producer is connected; rejects after `timeoutMs`. */
  ready(timeoutMs?: number): Promise<void>;
  /** Stops the sidecar after it flushed what it holds. */
  close(): Promise<void>;
}

export interface SidecarOptions {
  clientId?: string;
  /** Extra environment for the sidecar (it parses config() like every process). */
  env?: Record<string, string | undefined>;
  /** A request the sidecar does not answer by then fails (the producer's own timeouts are longer). */
  requestTimeoutMs?: number;
}

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 10_000;

async function eachLine(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of stream) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n")) >= 0) {
      onLine(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
    }
  }
}

type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
type Pending = { resolve: () => void; reject: (error: Error) => void; timer: ReturnType<typeof setTimeout> };

export function startKafkaSidecar(options: SidecarOptions = {}): KafkaSidecar {
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  let state: SidecarState = "starting";
  let child: Bun.Subprocess<"pipe", "pipe", "inherit"> | undefined;
  let lastProblem = "still connecting to Kafka";
  let restartDelay = RESTART_MIN_MS;
  let restartTimer: ReturnType<typeof setTimeout> | undefined;
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const readyWaiters = new Set<() => void>();

  const failAll = (reason: string) => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      p.reject(new Error(reason));
      pending.delete(id);
    }
  };

  const onLine = (line: string) => {
    let message: SidecarReply;
    try {
      message = JSON.parse(line) as SidecarReply;
    } catch {
      return; // not ours: a library printed to stdout before the sidecar redirected it
    }
    if ("event" in message) {
      if (message.event === "ready") {
        state = "ready";
        restartDelay = RESTART_MIN_MS;
        for (const wake of readyWaiters) wake();
        readyWaiters.clear();
      } else {
        lastProblem = message.error;
      }
      return;
    }
    const p = pending.get(message.id);
    if (!p) return;
    pending.delete(message.id);
    clearTimeout(p.timer);
    if (message.ok) p.resolve();
    else p.reject(new Error(message.error));
  };

  const scheduleRestart = () => {
    if (state === "closed") return;
    state = "down";
    restartTimer = setTimeout(() => void spawn(), restartDelay);
    restartDelay = Math.min(restartDelay * 2, RESTART_MAX_MS);
  };

  // A function, not an inline test: TypeScript would keep `state` narrowed across the await below.
  const closed = () => state === "closed";

  const spawn = async () => {
    if (closed()) return;
    state = "starting";
    try {
      const file = await bundleSidecar();
      if (closed()) return;
      const proc = Bun.spawn(["node", file], {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "inherit",
        // The sidecar logs in to Kafka as whoever this environment names (KAFKA_USERNAME/KAFKA_PASSWORD).
        env: { ...sidecarEnvironment(process.env), ...options.env, KAFKA_CLIENT_ID: options.clientId ?? config().kafkaClientId },
      });
      child = proc;
      void eachLine(proc.stdout, onLine).catch(() => {});
      void proc.exited.then((code) => {
        if (child !== proc) return;
        child = undefined;
        if (state !== "closed") lastProblem = `the Kafka sidecar exited (${code}): ${lastProblem}`;
        failAll(lastProblem);
        scheduleRestart();
      });
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
      scheduleRestart();
    }
  };

  const request = (body: WithoutId<SidecarRequest>) => {
    const proc = child;
    if (state !== "ready" || !proc) return Promise.reject(new Error(`Kafka is not connected (${lastProblem})`));
    const id = nextId++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the Kafka sidecar did not answer within ${requestTimeoutMs} ms`));
      }, requestTimeoutMs);
      pending.set(id, { resolve, reject, timer });
      proc.stdin.write(`${JSON.stringify({ ...body, id })}\n`);
      proc.stdin.flush();
    });
  };

  void spawn();

  return {
    get state() {
      return state;
    },
    get pid() {
      return child?.pid;
    },
    send: (topic: string, messages: KafkaMessage[]) => request({ op: "send", topic, messages }),
    probe: (topic: string, timeoutMs: number) => request({ op: "probe", topic, timeoutMs }),
    ready(timeoutMs = 30_000) {
      if (state === "ready") return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          readyWaiters.delete(wake);
          reject(new Error(`Kafka not connected after ${timeoutMs} ms (${lastProblem})`));
        }, timeoutMs);
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        readyWaiters.add(wake);
      });
    },
    async close() {
      if (state === "closed") return;
      state = "closed";
      clearTimeout(restartTimer);
      const proc = child;
      if (!proc) return;
      proc.stdin.end(); // the sidecar flushes and exits on end of input
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(8_000).then(() => false)]);
      if (!exited) proc.kill();
      failAll("the Kafka sidecar was closed");
    },
  };
}
