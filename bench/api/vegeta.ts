/**
 * vegeta (github.com/tsenart/vegeta), a constant-rate HTTP load generator: each request is sent on its schedule
 * whether or not earlier ones were answered (an open loop), so a slow answer cannot hide the requests it delayed
 * (coordinated omission, which wrk's closed loop has). Installed on first use from the Go module proxy into
 * .stack/tools/bin (a benchmark's tool, not the stack's).
 */
import { existsSync, mkdirSync } from "node:fs";

const VERSION = "v12.13.0";
const ROOT = new URL("../../", import.meta.url).pathname;
const BIN_DIR = `${ROOT}.stack/tools/bin`;

export async function vegetaBinary(): Promise<string> {
  const bin = `${BIN_DIR}/vegeta`;
  if (existsSync(bin)) return bin;
  mkdirSync(BIN_DIR, { recursive: true });
  console.error(`installing vegeta ${VERSION} (go install, once)…`);
  const proc = Bun.spawn(["go", "install", `github.com/tsenart/vegeta/v12@${VERSION}`], {
    env: { ...process.env, GOBIN: BIN_DIR, GOFLAGS: "-mod=mod" },
    stdout: "inherit",
    stderr: "inherit",
  });
  if ((await proc.exited) !== 0 || !existsSync(bin)) throw new Error("go install of vegeta failed (is Go installed?)");
  return bin;
}

export interface Target {
  url: string;
  headers: Record<string, string>;
}

/** vegeta's JSON target lines (one request each, taken round-robin). */
export function targetLines(targets: Target[]): string {
  return targets
    .map((t) =>
      JSON.stringify({ method: "GET", url: t.url, header: Object.fromEntries(Object.entries(t.headers).map(([k, v]) => [k, [v]])) }),
    )
    .join("\n");
}

export interface AttackReport {
  offeredPerS: number;
  /** Requests answered per second (throughput, successes only). */
  answeredPerS: number;
  requests: number;
  successRatio: number;
  latencyMs: { p50: number; p90: number; p95: number; p99: number; max: number };
  statusCodes: Record<string, number>;
  errors: string[];
}

/** One constant-rate attack of `seconds` at `rate` requests/s; the latencies are vegeta's, from each send. */
export async function attack(targetsFile: string, rate: number, seconds: number): Promise<AttackReport> {
  const bin = await vegetaBinary();
  const attackProc = Bun.spawn(
    [bin, "attack", "-format=json", `-targets=${targetsFile}`, `-rate=${rate}`, `-duration=${seconds}s`, "-timeout=30s",
      "-keepalive=true", "-max-body=0"],
    { stdout: "pipe", stderr: "inherit" },
  );
  const report = Bun.spawn([bin, "report", "-type=json"], { stdin: attackProc.stdout, stdout: "pipe", stderr: "inherit" });
  const [out, attackCode, reportCode] = await Promise.all([new Response(report.stdout).text(), attackProc.exited, report.exited]);
  if (attackCode !== 0 || reportCode !== 0) throw new Error(`vegeta failed (attack ${attackCode}, report ${reportCode})`);
  const r = JSON.parse(out) as {
    requests: number; rate: number; throughput: number; success: number;
    latencies: { "50th": number; "90th": number; "95th": number; "99th": number; max: number };
    status_codes: Record<string, number>; errors: string[] | null;
  };
  const ms = (ns: number) => +(ns / 1e6).toFixed(3);
  return {
    offeredPerS: rate,
    answeredPerS: Math.round(r.throughput),
    requests: r.requests,
    successRatio: r.success,
    latencyMs: { p50: ms(r.latencies["50th"]), p90: ms(r.latencies["90th"]), p95: ms(r.latencies["95th"]), p99: ms(r.latencies["99th"]), max: ms(r.latencies.max) },
    statusCodes: r.status_codes,
    errors: (r.errors ?? []).slice(0, 10),
  };
}
