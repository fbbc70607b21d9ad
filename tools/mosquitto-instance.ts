/**
 * A Mosquitto of its own for durability tests and benchmarks: the project's real configuration
 * (infra/mosquitto/mosquitto.conf rendered as bin/stack renders it, with the stack's password file and identity-guard
 * plugin, and the repository's ACL) on another port, with its own persistence folder and log, so restarting or killing it
 * disturbs nobody using the stack's broker. `settings` replaces single-value lines (e.g. autosave_interval) for a
 * measurement; nothing else differs from the stack's broker.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";

const ROOT = new URL("../", import.meta.url).pathname;
const STACK = `${ROOT}.stack`;

export interface MosquittoInstanceOptions {
  port: number;
  /** The TLS listener's port (the config's `listener 8883`); without it the instance has no TLS listener. */
  tlsPort?: number;
  /** Holds the rendered config, the persistence file and the log; removed by remove(). */
  dir: string;
  /** Replaces (or adds) `key value` lines of the rendered config. */
  settings?: Record<string, string | number>;
  /** Defaults to the project's config. */
  configFile?: string;
}

export interface MosquittoInstance {
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  /** Starts the broker (again) and waits until it accepts TCP connections; resolves the milliseconds that took. */
  start(): Promise<number>;
  /** SIGTERM (a graceful stop: Mosquitto saves its database) or SIGKILL; resolves when the process has exited. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Resident memory of the broker process, in bytes. */
  rssBytes(): number;
  log(): string;
  remove(): Promise<void>;
}

/** The stack's config text with this instance's port, persistence folder, log file and settings. */
export function renderConfig(options: MosquittoInstanceOptions): string {
  const source = readFileSync(options.configFile ?? `${ROOT}infra/mosquitto/mosquitto.conf`, "utf8");
  const settings: Record<string, string | number> = {
    // The repository's ACL (bin/stack copies it verbatim), so a change to it is tested before the stack has it.
    acl_file: `${options.dir}/acl`,
    persistence_location: `${options.dir}/data/`,
    log_dest: `file ${options.dir}/mosquitto.log`,
    ...options.settings,
  };
  const lines = source
    .replaceAll("@STACK@", STACK)
    .split("\n")
    .map((line) => (/^listener 1883 /.test(line) ? `listener ${options.port} 127.0.0.1` : line))
    .map((line) => (/^listener 8883 /.test(line) && options.tlsPort ? `listener ${options.tlsPort} 127.0.0.1` : line));
  // No TLS port: drop the TLS listener and its certificate lines (they follow it), so it never takes the stack's 8883.
  const tls = lines.findIndex((line) => /^listener 8883 /.test(line));
  if (tls >= 0) {
    let end = tls + 1;
    while (/^(cafile|certfile|keyfile) /.test(lines[end] ?? "")) end++;
    lines.splice(tls, end - tls);
  }
  for (const [key, value] of Object.entries(settings)) {
    const at = lines.findIndex((line) => line.startsWith(`${key} `));
    if (at >= 0) lines[at] = `${key} ${value}`;
    else lines.push(`${key} ${value}`);
  }
  if (!lines.some((line) => line.startsWith("listener "))) throw new Error("the config has no listener line");
  // As bin/stack: started as root, Mosquitto would switch to its own user and lose access to its files.
  return `${lines.join("\n").trimEnd()}\nuser root\n`;
}

const portAccepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

export function mosquittoInstance(options: MosquittoInstanceOptions): MosquittoInstance {
  mkdirSync(`${options.dir}/data`, { recursive: true });
  const configPath = `${options.dir}/mosquitto.conf`;
  writeFileSync(configPath, renderConfig(options));
  copyFileSync(`${ROOT}infra/mosquitto/acl`, `${options.dir}/acl`);
  let proc: ReturnType<typeof Bun.spawn> | undefined;

  return {
    port: options.port,
    dir: options.dir,
    get pid() {
      if (!proc) throw new Error("the broker is not running");
      return proc.pid;
    },
    async start() {
      if (await portAccepts(options.port)) throw new Error(`port ${options.port} is already taken`);
      const started = performance.now();
      proc = Bun.spawn(["mosquitto", "-c", configPath], { stdout: "ignore", stderr: "pipe" });
      // Loading a large persistence file happens before the listener opens, so this is the restart time.
      while (!(await portAccepts(options.port))) {
        if (proc.exitCode !== null) {
          throw new Error(`mosquitto exited (${proc.exitCode}): ${await new Response(proc.stderr as ReadableStream).text()}`);
        }
        await Bun.sleep(5);
      }
      return performance.now() - started;
    },
    async stop(signal = "SIGTERM") {
      if (!proc) return;
      proc.kill(signal);
      await proc.exited;
      proc = undefined;
    },
    rssBytes() {
      if (!proc) throw new Error("the broker is not running");
      const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1];
      return Number(kb) * 1024;
    },
    log() {
      try {
        return readFileSync(`${options.dir}/mosquitto.log`, "utf8");
      } catch {
        return "";
      }
    },
    async remove() {
      await this.stop("SIGKILL");
      rmSync(options.dir, { recursive: true, force: true });
    },
  };
}
