// docker-compose.yml and docker/ cannot run here (no Docker engine): what can be checked without one is, against the
// file as `docker-compose config` resolves it: that it builds from tracked files only and runs no ignored path, that
// every image is pinned and there is one Bun and one Node version, that each service gets only its own identity
// (its secrets are generated and filled in by the real scripts, and the result parses with lib/config.ts), and that
// the Dockerfiles pass a linter (dockerfile-utils) and the configuration renderers accept today's infra/ files.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validate } from "dockerfile-utils";
import { parseAuthConfig, parseConfig, parseMqttAdminConfig } from "../../lib/config.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

interface Service {
  build?: { context: string; dockerfile?: string; target?: string };
  image?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
  restart?: string;
  profiles?: string[];
}

async function run(cmd: string[], env?: Record<string, string>) {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", ...(env ? { env } : {}) });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { stdout, stderr, code };
}

const resolved = await run(["docker-compose", "-f", `${ROOT}/docker-compose.yml`, "config"]);
const compose = Bun.YAML.parse(resolved.stdout) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services ?? {};

const ONE_SHOTS = ["secrets", "db-setup", "migrate", "kafka-setup", "demo-data"];
const LONG_RUNNING = ["postgres", "mosquitto", "kafka", "bridge", "positions", "modes", "api", "simulator"];
const DOCKERFILES = [...new Set(Object.values(services).flatMap((s) => (s.build?.dockerfile ? [s.build.dockerfile] : [])))];
const dockerfileText = Object.fromEntries(
  await Promise.all(DOCKERFILES.map(async (f) => [f, await Bun.file(`${ROOT}/${f}`).text()] as const)),
);

const binStack = await Bun.file(`${ROOT}/bin/stack`).text();
const BUN_VERSION = /^BUN_VERSION=(\S+)$/m.exec(binStack)?.[1];
const STACK_SECRET_NAMES = /^SECRET_NAMES=\(([^)]*)\)/m.exec(binStack)?.[1]?.split(/\s+/).filter(Boolean) ?? [];
// Every variable lib/config.ts reads, by name: text(env, "NAME", …), env.NAME, env[…] with a literal.
const configSource = await Bun.file(`${ROOT}/lib/config.ts`).text();
const CONFIG_NAMES = new Set([...configSource.matchAll(/"([A-Z][A-Z0-9_]{2,})"|env\.([A-Z][A-Z0-9_]+)/g)].map((m) => m[1] ?? m[2]!));

const tracked = async (paths: string[]) => (await run(["git", "ls-files", "--", ...paths])).stdout.split("\n").filter(Boolean);
const ignored = async (paths: string[]) =>
  (await run(["git", "check-ignore", "--no-index", "--", ...paths])).stdout.split("\n").filter(Boolean);

/** `source:target[:mode]` of a volume entry; a bind mount's source is a path (resolved absolute by compose). */
const mounts = (s: Service) =>
  (s.volumes ?? []).map((v) => {
    const [source, target, mode] = v.split(":") as [string, string, string | undefined];
    return { source, target, mode, bind: source.startsWith("/") || source.startsWith(".") };
  });
const secretsVolume = (s: Service) => mounts(s).find((m) => m.target === "/run/project-secrets")?.source;
const placeholders = (s: Service) =>
  new Set(Object.values(s.environment ?? {}).flatMap((v) => [...String(v).matchAll(/@([A-Z][A-Z0-9_]*)@/g)].map((m) => m[1]!)));
/** The secrets service's list for a volume: SECRETS_FOR_<SERVICE> where the volume is mounted at /out/<service>. */
function listFor(volume: string): string[] {
  const out = mounts(services.secrets!).find((m) => m.source === volume)?.target;
  if (!out?.startsWith("/out/")) return [];
  const name = `SECRETS_FOR_${out.slice(5).toUpperCase().replaceAll("-", "_")}`;
  return (services.secrets!.environment?.[name] ?? "").split(/\s+/).filter(Boolean);
}
/** Secrets an image's own entrypoint reads from files (postgres: POSTGRES_PASSWORD_FILE). */
function fileSecrets(s: Service): string[] {
  const text = s.build?.dockerfile ? dockerfileText[s.build.dockerfile] ?? "" : "";
  return [...text.matchAll(/_FILE=\/run\/project-secrets\/([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!);
}

describe("docker-compose.yml", () => {
  test("validates, and has every part of the system", () => {
    expect(resolved.stderr).not.toContain("ERROR");
    expect(resolved.code).toBe(0);
    expect(Object.keys(services).sort()).toEqual([...ONE_SHOTS, ...LONG_RUNNING].sort());
    expect(services.simulator?.profiles).toEqual(["demo"]);
    expect(services["demo-data"]?.profiles).toEqual(["demo"]);
  });

  test("builds from tracked Dockerfiles in the repository, whose COPY sources exist and reach the build", async () => {
    for (const [name, s] of Object.entries(services)) {
      expect({ name, image: s.image, context: s.build?.context }).toEqual({ name, image: undefined, context: ROOT });
    }
    expect(DOCKERFILES.length).toBeGreaterThanOrEqual(5);
    expect((await tracked(DOCKERFILES)).sort()).toEqual([...DOCKERFILES].sort());
    expect(await tracked([".dockerignore"])).toEqual([".dockerignore"]);

    const dockerignore = (await Bun.file(`${ROOT}/.dockerignore`).text())
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("#"));
    const sources = Object.values(dockerfileText).flatMap((text) =>
      [...text.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/)),
    );
    expect(sources.length).toBeGreaterThan(10);
    for (const source of new Set(sources)) {
      const path = source.replace(/\/$/, "");
      expect({ source, exists: existsSync(`${ROOT}/${path}`) }).toEqual({ source, exists: true });
      expect({ source, dockerignored: dockerignore.some((rule) => rule === path.split("/")[0] || rule === path) }).toEqual({ source, dockerignored: false });
    }
    expect(await ignored([...new Set(sources)])).toEqual([]);
    // What .dockerignore keeps out of every build context.
    for (const rule of ["node_modules", ".stack", ".git"]) expect(dockerignore).toContain(rule);
  });

  test("mounts only named volumes or tracked files, and runs no ignored path", async () => {
    const binds = Object.values(services).flatMap((s) => mounts(s).filter((m) => m.bind).map((m) => m.source.replace(`${ROOT}/`, "")));
    if (binds.length > 0) {
      expect((await tracked(binds)).sort()).toEqual([...new Set(binds)].sort());
      expect(await ignored(binds)).toEqual([]);
    }
    for (const s of Object.values(services)) {
      for (const m of mounts(s).filter((m) => !m.bind)) expect(Object.keys(compose.volumes)).toContain(m.source);
    }
    const args = Object.values(services).flatMap((s) => [...(s.command ?? []), ...(s.entrypoint ?? [])]);
    const paths = args.filter((a) => /^[\w.][\w.-]*\/[\w./-]+$/.test(a));
    expect(paths).toContain("dist/bridge.js");
    expect(await ignored(paths)).toEqual([]);
    // TypeScript run directly is the project's own source.
    const sources = paths.filter((p) => p.endsWith(".ts"));
    expect((await tracked(sources)).sort()).toEqual([...new Set(sources)].sort());
    expect(args.join(" ")).not.toContain(".stack");
  });

  test("pins every image to an exact version, with one Bun (bin/stack's) and one Node everywhere", () => {
    const refs = Object.values(dockerfileText).flatMap((text) => {
      const stages = new Set([...text.matchAll(/^FROM \S+ AS (\S+)$/gim)].map((m) => m[1]!));
      const from = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
      const copyFrom = [...text.matchAll(/^COPY --from=(\S+)/gm)].map((m) => m[1]!);
      return [...from, ...copyFrom].filter((r) => !stages.has(r));
    });
    expect(refs.length).toBeGreaterThanOrEqual(8);
    for (const ref of refs) {
      const tag = /^[^@]+:([^:@/]+)(@sha256:[0-9a-f]{64})?$/.exec(ref)?.[1] ?? "";
      // An exact release (major.minor.patch somewhere in the tag, e.g. 20.20.2-bookworm-slim, 15-3.5.3-bookworm).
      expect({ ref, exact: /\d+\.\d+\.\d+/.test(tag) && !/latest/.test(tag) }).toEqual({ ref, exact: true });
    }
    expect(BUN_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    const everything = [...Object.values(dockerfileText), resolved.stdout].join("\n");
    const bunVersions = [...everything.matchAll(/oven\/bun:([\w.-]+)|bun@(\d[\w.-]*)/g)].map((m) => (m[1] ?? m[2])!.split("-")[0]);
    expect(bunVersions.length).toBeGreaterThan(0);
    expect(new Set(bunVersions)).toEqual(new Set([BUN_VERSION!]));
    const nodeVersions = [...everything.matchAll(/\bnode:([\w.-]+)/g)].map((m) => m[1]!.split("-")[0]);
    expect(nodeVersions.length).toBeGreaterThan(0);
    expect(new Set(nodeVersions).size).toBe(1);
  });

  test("health checks and restart policies: long-running services are checked, one-shots are waited for", () => {
    for (const name of LONG_RUNNING) {
      const s = services[name]!;
      expect({ name, restart: s.restart }).toEqual({ name, restart: "unless-stopped" });
      // The simulator is a load generator nothing waits for (docker-compose.yml says why).
      if (name !== "simulator") expect({ name, check: s.healthcheck?.test?.length ?? 0 }).not.toEqual({ name, check: 0 });
    }
    for (const name of ONE_SHOTS) expect({ name, restart: services[name]!.restart }).toEqual({ name, restart: "no" });
    for (const [name, s] of Object.entries(services)) {
      for (const [dependency, { condition }] of Object.entries(s.depends_on ?? {})) {
        const wanted = ONE_SHOTS.includes(dependency) ? "service_completed_successfully" : "service_healthy";
        expect({ name, dependency, condition }).toEqual({ name, dependency, condition: wanted });
      }
      if (name !== "secrets") expect(Object.keys(s.depends_on ?? {}).length).toBeGreaterThan(0);
    }
  });

  test("every service's settings are lib/config.ts's or the stack's secrets, and secrets are bin/stack's list", () => {
    expect(STACK_SECRET_NAMES.length).toBeGreaterThan(10);
    const composeNames = services.secrets!.environment!.SECRET_NAMES!.split(/\s+/).filter(Boolean);
    expect(composeNames.sort()).toEqual([...STACK_SECRET_NAMES].sort());
    const known = new Set([...CONFIG_NAMES, ...STACK_SECRET_NAMES]);
    for (const [name, s] of Object.entries(services)) {
      if (name === "secrets") continue;
      for (const variable of Object.keys(s.environment ?? {})) expect({ name, variable, known: known.has(variable) }).toEqual({ name, variable, known: true });
      for (const secret of placeholders(s)) expect(STACK_SECRET_NAMES).toContain(secret);
    }
  });

  test("each service gets exactly the secrets it names, in a volume of its own, read-only", () => {
    const byVolume = new Map<string, Set<string>>();
    for (const [name, s] of Object.entries(services)) {
      if (name === "secrets") continue;
      const wanted = new Set([...placeholders(s), ...fileSecrets(s)]);
      const volume = secretsVolume(s);
      if (wanted.size === 0) {
        expect({ name, volume }).toEqual({ name, volume: undefined });
        continue;
      }
      expect({ name, mode: mounts(s).find((m) => m.source === volume)?.mode }).toEqual({ name, mode: "ro" });
      expect({ name, secrets: volume?.startsWith("secrets-") }).toEqual({ name, secrets: true });
      for (const secret of wanted) expect({ name, secret, given: listFor(volume!).includes(secret) }).toEqual({ name, secret, given: true });
      byVolume.set(volume!, new Set([...(byVolume.get(volume!) ?? []), ...wanted]));
    }
    // Nothing handed out that no service using the volume names: least privilege, checked both ways.
    for (const [volume, used] of byVolume) expect({ volume, list: listFor(volume).sort() }).toEqual({ volume, list: [...used].sort() });
    // The services that never hold a given secret.
    const holders = (secret: string) =>
      Object.entries(services).filter(([n, s]) => n !== "secrets" && placeholders(s).has(secret)).map(([n]) => n);
    expect(holders("AUTH_TOKEN_SECRET").sort()).toEqual(["api", "simulator"]);
    expect(holders("KAFKA_CONTROLLER_PASSWORD")).toEqual(["kafka"]);
    expect(holders("PG_SUPERUSER_PASSWORD")).toEqual(["db-setup"]);
  });

  test("the real secrets scripts generate, hand out and fill in each service's identity, which lib/config.ts accepts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "compose-secrets-"));
    try {
      const master = join(dir, "master");
      mkdirSync(master);
      const outs = mounts(services.secrets!).filter((m) => m.target.startsWith("/out/"));
      for (const m of outs) mkdirSync(join(dir, "out", m.target.slice(5)), { recursive: true });
      const env = { PATH: process.env.PATH!, ...services.secrets!.environment, SECRETS_MASTER: master, SECRETS_OUT: join(dir, "out") };
      for (let i = 0; i < 2; i++) {
        const generated = await run(["sh", "docker/secrets/generate.sh"], env);
        expect(generated.stderr).toBe("");
        expect(generated.code).toBe(0);
      }
      expect(readdirSync(master).sort()).toEqual([...STACK_SECRET_NAMES].sort());
      const secret = await Bun.file(join(master, "AUTH_TOKEN_SECRET")).text();
      expect(secret).toMatch(/^[0-9a-f]{48}$/);

      for (const [name, s] of Object.entries(services)) {
        const volume = secretsVolume(s);
        if (name === "secrets" || !volume || !s.environment) continue;
        const out = join(dir, "out", outs.find((m) => m.source === volume)!.target.slice(5));
        const filled = await run(["sh", "docker/with-secrets.sh", "env"], { PATH: process.env.PATH!, SECRETS_DIR: out, ...s.environment });
        expect({ name, code: filled.code, stderr: filled.stderr }).toEqual({ name, code: 0, stderr: "" });
        const result = Object.fromEntries(filled.stdout.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
        for (const variable of Object.keys(s.environment)) expect(result[variable]).not.toMatch(/@[A-Z][A-Z0-9_]*@/);
        if (["bridge", "positions", "api", "migrate", "demo-data", "simulator"].includes(name)) {
          const cfg = parseConfig(result);
          if (result.DATABASE_URL) expect(new URL(cfg.databaseUrl).password).toMatch(/^[0-9a-f]{48}$/);
          if (result.KAFKA_USERNAME) expect(cfg.kafkaSasl?.password).toMatch(/^[0-9a-f]{48}$/);
        }
        if (name === "api" || name === "simulator") expect(parseAuthConfig(result).tokenSecret).toBe(secret);
        if (name === "api") expect(parseMqttAdminConfig(result).adminPassword).toMatch(/^[0-9a-f]{48}$/);
        if (name === "bridge") expect(new URL(parseConfig(result).mqttUrl).username).toBe(result.BRIDGE_CLIENT_ID!);
      }
      // A secret a service was not given stops it at start, naming the variable.
      const refused = await run(["sh", "docker/with-secrets.sh", "true"], { PATH: process.env.PATH!, SECRETS_DIR: join(dir, "out", "bridge"), AUTH_TOKEN_SECRET: "@AUTH_TOKEN_SECRET@" });
      expect(refused.code).toBe(78);
      expect(refused.stderr).toContain("SECRET_MISSING: AUTH_TOKEN_SECRET");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("docker/", () => {
  test("every Dockerfile passes the linter (dockerfile-utils)", () => {
    for (const [file, text] of Object.entries(dockerfileText)) {
      expect({ file, problems: validate(text).map((d) => `${d.range.start.line + 1}: ${d.message}`) }).toEqual({ file, problems: [] });
    }
  });

  test("the images' configuration renderers accept today's infra/ files", async () => {
    const mosquitto = await run(["sh", "docker/mosquitto/render-conf.sh", "infra/mosquitto/mosquitto.conf"]);
    expect(mosquitto.code).toBe(0);
    expect(mosquitto.stdout).toContain("\nlistener 1883\n");
    expect(mosquitto.stdout).toContain("\npassword_file /mosquitto/auth/passwd\n");
    expect(mosquitto.stdout).toContain("\nplugin /usr/lib/mosquitto/identity-guard.so\n");
    expect(mosquitto.stdout).toContain("\nallow_anonymous false\n");
    const kafka = await run(["sh", "docker/kafka/render-conf.sh", "infra/kafka/server.properties"]);
    expect(kafka.code).toBe(0);
    expect(kafka.stdout).toContain("\nadvertised.listeners=CLIENT://kafka:9092\n");
    expect(kafka.stdout).toContain("\nallow.everyone.if.no.acl.found=false\n");
    const settings = kafka.stdout.split("\n").filter((l) => !l.startsWith("#"));
    expect(settings.filter((l) => l.includes("127.0.0.1:9092") || l.includes("@STACK@"))).toEqual([]);
    // The API and the broker agree on where the password file and the pid file are.
    expect(services.api!.environment!.MQTT_PASSWORD_FILE).toBe("/mosquitto/auth/passwd");
    const entrypoint = await Bun.file(`${ROOT}/docker/mosquitto/entrypoint.sh`).text();
    expect(entrypoint).toContain(`"$auth/mosquitto.pid"`);
    expect(services.api!.environment!.MQTT_BROKER_PID_FILE).toBe("/mosquitto/auth/mosquitto.pid");
  });
});
