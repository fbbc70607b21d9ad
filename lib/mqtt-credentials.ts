/**
 * MQTT credentials for drivers, issued and revoked against Mosquitto's own password_file (see
 * infra/mosquitto/mosquitto.conf for why not the dynamic-security plugin). A driver's username is its UUID; the ACL
 * pattern `drivers/%u/…` then limits it to its own topics, and its client id must be that UUID (identity-guard).
 *
 * Mosquitto re-reads the whole file on SIGHUP, so issues and revocations arriving within `coalesceMs` share one
 * rewrite and one reload; `issueMany` is one change however many drivers it carries. Only hashes are stored (the
 * broker's own `$7$` PBKDF2-SHA512 format, as mosquitto_passwd writes). A reload is confirmed, not assumed: every
 * rewrite also sets a fresh password for the `reload-probe` user, and a change resolves only once the broker accepts
 * it. Several processes may issue at once: the rewrite + reload + confirmation hold a lock file.
 */
import { pbkdf2, randomBytes } from "node:crypto";
import { open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import mqtt from "mqtt";
import type { MqttAdminConfig } from "./config.ts";
import { AppError } from "./errors.ts";

const pbkdf2Async = promisify(pbkdf2);

export interface MqttCredentials {
  username: string;
  password: string;
  client_id: string;
}

export interface MqttCredentialStore {
  /** Fresh credentials for the driver; earlier ones stop working (a connected session keeps running until revoke). */
  issue(driverId: string): Promise<MqttCredentials>;
  /** Many drivers in one change of the password file (a fleet's first sign-in, a benchmark). */
  issueMany(driverIds: string[]): Promise<MqttCredentials[]>;
  /** The driver can no longer connect, and its connected session is dropped. */
  revoke(driverId: string): Promise<void>;
  /** Many drivers in one change (a benchmark's clean-up, a fleet retired at once). */
  revokeMany(driverIds: string[]): Promise<void>;
  /** Password-file rewrites (each one broker reload) and the credential changes they carried. */
  stats(): { flushes: number; changes: number };
  close(): Promise<void>;
}

export interface MqttCredentialStoreOptions extends Pick<MqttAdminConfig, "adminUsername" | "adminPassword" | "passwordFile" | "brokerPidFile" | "coalesceMs"> {
  /** The broker, for the reload probe and the admin's revocations (credentials in it are ignored). */
  mqttUrl: string;
  /** Longest wait for the broker to accept a reload. */
  reloadTimeoutMs?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const RELOAD_PROBE_USER = "reload-probe";
const KICK_TOPIC = "$CONTROL/identity-guard/v1/kick";
// mosquitto_passwd 2.0's defaults: 12 bytes of salt, 101 iterations, a 64-byte SHA-512 digest.
const ITERATIONS = 101;

/** One password_file line in Mosquitto 2.0's `$7$` form. */
export async function passwordLine(username: string, password: string): Promise<string> {
  const salt = randomBytes(12);
  const hash = await pbkdf2Async(password, salt, ITERATIONS, 64, "sha512");
  return `${username}:$7$${ITERATIONS}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/** A password as a phone would get it: 24 random bytes, URL-safe. */
const newPassword = () => randomBytes(24).toString("base64url");

function driverUsername(driverId: string): string {
  const id = driverId.toLowerCase();
  if (!UUID.test(id)) throw new AppError("INVALID_ID", `driver id "${driverId}" is not a UUID`);
  return id;
}

/** Applies `changes` (username → line, or null to remove) to the password file's text, keeping every other line. */
export function applyChanges(text: string, changes: Map<string, string | null>): string {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const name = line.slice(0, line.indexOf(":"));
    if (!changes.has(name)) out.push(line);
  }
  for (const line of changes.values()) if (line) out.push(line);
  return out.join("\n") + "\n";
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

export function createMqttCredentialStore(options: MqttCredentialStoreOptions): MqttCredentialStore {
  const broker = new URL(options.mqttUrl);
  broker.username = "";
  broker.password = "";
  const reloadTimeoutMs = options.reloadTimeoutMs ?? 15_000;
  let pending = new Map<string, string | null>();
  let waiters: Waiter[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let flushing: Promise<void> = Promise.resolve();
  const counts = { flushes: 0, changes: 0 };

  function schedule(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    timer ??= setTimeout(() => {
      timer = undefined;
      const changes = pending;
      const batch = waiters;
      pending = new Map();
      waiters = [];
      // One flush at a time in this process; the lock file orders us with other processes.
      flushing = flushing.then(() =>
        flush(changes).then(
          () => batch.forEach((w) => w.resolve()),
          (err) => batch.forEach((w) => w.reject(err)),
        ),
      );
    }, options.coalesceMs);
    return done;
  }

  async function flush(changes: Map<string, string | null>): Promise<void> {
    counts.flushes++;
    counts.changes += changes.size;
    const probePassword = newPassword();
    changes.set(RELOAD_PROBE_USER, await passwordLine(RELOAD_PROBE_USER, probePassword));
    const release = await lock(`${options.passwordFile}.lock`);
    try {
      const text = await readFile(options.passwordFile, "utf8").catch(() => "");
      const tmp = `${options.passwordFile}.${process.pid}.tmp`;
      await writeFile(tmp, applyChanges(text, changes), { mode: 0o600 });
      await rename(tmp, options.passwordFile);
      const pid = Number((await readFile(options.brokerPidFile, "utf8")).trim());
      try {
        process.kill(pid, "SIGHUP");
      } catch (err) {
        throw new AppError("UPSTREAM_UNAVAILABLE", `MQTT broker (pid ${pid}) cannot be told to reload`, { cause: err });
      }
      await waitForReload(probePassword);
    } finally {
      await release();
    }
    const revoked = [...changes].filter(([, line]) => line === null).map(([name]) => name);
    if (revoked.length > 0) await kick(revoked);
  }

  /** The broker has re-read the file once the probe's new password works. */
  async function waitForReload(password: string): Promise<void> {
    const deadline = Date.now() + reloadTimeoutMs;
    for (;;) {
      const client = await mqtt
        .connectAsync(broker.toString(), {
          username: RELOAD_PROBE_USER,
          password,
          clientId: `${RELOAD_PROBE_USER}-${process.pid}`,
          reconnectPeriod: 0,
          connectTimeout: 5_000,
          protocolVersion: 4,
        })
        .catch(() => undefined);
      if (client) {
        await client.endAsync(true);
        return;
      }
      if (Date.now() > deadline) {
        throw new AppError("UPSTREAM_UNAVAILABLE", `MQTT broker did not reload its password file within ${reloadTimeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Drops the revoked users' connected sessions (the identity-guard plugin's control topic, admin only). */
  async function kick(usernames: string[]): Promise<void> {
    const client = await mqtt.connectAsync(broker.toString(), {
      username: options.adminUsername,
      password: options.adminPassword,
      clientId: `admin-kick-${process.pid}-${randomBytes(3).toString("hex")}`,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      protocolVersion: 5,
    });
    try {
      // 5,000 names (~185 KB) per message stay under the broker's plugin_opt_max_payload (256 KiB).
      for (let i = 0; i < usernames.length; i += 5_000) {
        const ack = await client.publishAsync(KICK_TOPIC, usernames.slice(i, i + 5_000).join("\n"), { qos: 1 });
        const reason = (ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
        if (reason >= 0x80) throw new AppError("UPSTREAM_UNAVAILABLE", `MQTT broker refused the revocation (reason ${reason})`);
      }
    } finally {
      await client.endAsync();
    }
  }

  async function issueMany(driverIds: string[]): Promise<MqttCredentials[]> {
    const issued = await Promise.all(
      driverIds.map(async (driverId) => {
        const username = driverUsername(driverId);
        const password = newPassword();
        return { credentials: { username, password, client_id: username }, line: await passwordLine(username, password) };
      }),
    );
    for (const { credentials, line } of issued) pending.set(credentials.username, line);
    await schedule();
    return issued.map((i) => i.credentials);
  }

  return {
    issueMany,
    async issue(driverId) {
      return (await issueMany([driverId]))[0]!;
    },
    async revoke(driverId) {
      pending.set(driverUsername(driverId), null);
      await schedule();
    },
    async revokeMany(driverIds) {
      for (const id of driverIds) pending.set(driverUsername(id), null);
      await schedule();
    },
    stats: () => ({ ...counts }),
    async close() {
      await flushing;
    },
  };
}

/** An exclusive lock file; one left by a process that died is taken over after a minute. */
async function lock(path: string): Promise<() => Promise<void>> {
  for (;;) {
    try {
      const handle = await open(path, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > 60_000) await rm(path, { force: true });
      else await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * `bun lib/mqtt-credentials.ts services <password file> <user>=<SECRET_NAME>...`: bin/stack's provisioning of the
 * service users (passwords from the environment, never on a command line). Prints "changed" when it rewrote the file.
 */
async function provisionServices(file: string, specs: string[]): Promise<void> {
  const { pbkdf2Sync } = await import("node:crypto");
  // The same lock as the issuers' (an API may be issuing while `bin/stack up` runs).
  const release = await lock(`${file}.lock`);
  try {
    await provisionLocked(file, specs, pbkdf2Sync);
  } finally {
    await release();
  }
}

async function provisionLocked(file: string, specs: string[], pbkdf2Sync: typeof import("node:crypto").pbkdf2Sync): Promise<void> {
  const text = await readFile(file, "utf8").catch(() => "");
  const existing = new Map(text.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf(":")), l] as const));
  const changes = new Map<string, string | null>();
  for (const spec of specs) {
    const [user, secretName] = spec.split("=") as [string, string];
    const password = process.env[secretName];
    if (!password) throw new Error(`${secretName} is not set`);
    // Keep a line whose hash still matches its secret, so an unchanged stack is not reloaded at every `up`.
    const [, , iterations, salt, hash] = (existing.get(user) ?? "").split("$");
    const same =
      salt && hash && pbkdf2Sync(password, Buffer.from(salt, "base64"), Number(iterations), 64, "sha512").toString("base64") === hash;
    if (!same) changes.set(user, await passwordLine(user, password));
  }
  if (changes.size === 0) return;
  await writeFile(`${file}.tmp`, applyChanges(text, changes), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
  console.log("changed");
}

if (import.meta.main && process.argv[2] === "services") {
  await provisionServices(process.argv[3]!, process.argv.slice(4));
}
