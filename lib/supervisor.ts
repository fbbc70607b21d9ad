/**
 * Runs a few long-lived child processes as one service: restarts a child that dies (with a growing pause), forwards
 * SIGTERM/SIGINT to every child and waits for them, and exits with a code that says what happened. Used by the
 * `bun run workers` and `bun run api` entry points. In containers the orchestrator restarts processes instead and
 * each service runs its process directly (docs/docker.md).
 */
import type { Subprocess } from "bun";
import { EXIT_CONFIG } from "./errors.ts";

export { EXIT_CONFIG };

export interface ChildSpec {
  name: string;
  command: string[];
  env?: Record<string, string | undefined>;
}

export interface RestartPolicy {
  /** Pause before the first restart; doubled for each further failure in a row, up to maxDelayMs. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** A child that ran this long before dying had started fine: its failure count starts over. */
  healthyAfterMs: number;
  /** Failures in a row (each before healthyAfterMs) after which the supervisor gives up: a crash loop. */
  maxFailuresInARow: number;
  /** How long children get to finish after SIGTERM before they are killed. */
  stopTimeoutMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  healthyAfterMs: 60_000,
  // 10 quick failures take ~2.5 min with these pauses: longer than a dependency's outage worth riding out.
  maxFailuresInARow: 10,
  stopTimeoutMs: 30_000,
});

/** The pause before restarting a child that has failed `failuresInARow` times in a row (1 = the first failure). */
export function restartDelayMs(policy: RestartPolicy, failuresInARow: number): number {
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, failuresInARow - 1));
}

export type ExitDecision =
  | { action: "restart"; delayMs: number; failuresInARow: number }
  | { action: "give-up"; exitCode: number; reason: "config_refused" | "crash_loop" };

/** What to do when a child exits while nobody asked it to stop. */
export function decideOnExit(
  policy: RestartPolicy,
  exit: { code: number | null; ranForMs: number; failuresInARow: number },
): ExitDecision {
  if (exit.code === EXIT_CONFIG) return { action: "give-up", exitCode: EXIT_CONFIG, reason: "config_refused" };
  const failuresInARow = exit.ranForMs >= policy.healthyAfterMs ? 1 : exit.failuresInARow + 1;
  if (failuresInARow > policy.maxFailuresInARow) return { action: "give-up", exitCode: 1, reason: "crash_loop" };
  return { action: "restart", delayMs: restartDelayMs(policy, failuresInARow), failuresInARow };
}

export interface SupervisorLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface Supervisor {
  /** Resolves with the exit code the supervisor should end with. */
  done: Promise<number>;
  /** Asks every child to stop (SIGTERM), kills what is left after stopTimeoutMs. */
  stop(signal?: NodeJS.Signals): Promise<number>;
  pids(): Record<string, number | undefined>;
}

interface Running {
  spec: ChildSpec;
  proc?: Subprocess;
  startedAt: number;
  failuresInARow: number;
  restartTimer?: Timer;
}

export function supervise(children: ChildSpec[], log: SupervisorLog, policy = DEFAULT_RESTART_POLICY): Supervisor {
  let stopping: Promise<number> | undefined;
  let finalCode = 0;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  const running = children.map((spec): Running => ({ spec, startedAt: 0, failuresInARow: 0 }));

  const start = (child: Running) => {
    child.startedAt = performance.now();
    const proc = Bun.spawn(child.spec.command, {
      env: child.spec.env ?? process.env,
      stdin: "ignore",
      stdout: "inherit",
      stderr: "inherit",
    });
    child.proc = proc;
    log.info("child started", { child: child.spec.name, pid: proc.pid });
    void proc.exited.then(() => onExit(child, proc));
  };

  const onExit = (child: Running, proc: Subprocess) => {
    if (child.proc !== proc) return;
    child.proc = undefined;
    const exit = { code: proc.exitCode, signal: proc.signalCode };
    if (stopping) {
      log.info("child stopped", { child: child.spec.name, ...exit });
      return;
    }
    const decision = decideOnExit(policy, {
      code: proc.exitCode,
      ranForMs: performance.now() - child.startedAt,
      failuresInARow: child.failuresInARow,
    });
    if (decision.action === "give-up") {
      log.error("child failed, stopping the service", { child: child.spec.name, reason: decision.reason, ...exit });
      finalCode = decision.exitCode;
      void stop();
      return;
    }
    child.failuresInARow = decision.failuresInARow;
    log.warn("child exited, restarting", { child: child.spec.name, ...exit, inMs: decision.delayMs, failuresInARow: decision.failuresInARow });
    child.restartTimer = setTimeout(() => {
      child.restartTimer = undefined;
      if (!stopping) start(child);
    }, decision.delayMs);
  };

  const stop = (signal: NodeJS.Signals = "SIGTERM"): Promise<number> => {
    stopping ??= (async () => {
      for (const child of running) clearTimeout(child.restartTimer);
      const alive = running.flatMap((c) => (c.proc ? [{ name: c.spec.name, proc: c.proc }] : []));
      for (const { proc } of alive) proc.kill(signal);
      const deadline = setTimeout(() => {
        for (const { name, proc } of alive) {
          if (proc.exitCode !== null || proc.signalCode !== null) continue;
          log.error("child did not stop in time, killing it", { child: name, afterMs: policy.stopTimeoutMs });
          proc.kill("SIGKILL");
        }
      }, policy.stopTimeoutMs);
      await Promise.all(alive.map(({ proc }) => proc.exited));
      clearTimeout(deadline);
      // A child that failed while stopping, or had to be killed, makes the stop unclean (the orchestrator should know).
      const unclean = ({ proc }: { proc: Subprocess }) =>
        (proc.exitCode !== null && proc.exitCode !== 0) || (proc.signalCode !== null && proc.signalCode !== signal);
      if (finalCode === 0 && alive.some(unclean)) finalCode = 1;
      resolveDone(finalCode);
      return finalCode;
    })();
    return stopping;
  };

  for (const child of running) start(child);
  return {
    done,
    stop,
    pids: () => Object.fromEntries(running.map((c) => [c.spec.name, c.proc?.pid])),
  };
}

/** Entry-point glue: SIGTERM/SIGINT stop the children, and the process exits with the supervisor's code. */
export function runUntilSignalled(supervisor: Supervisor, log: SupervisorLog): void {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      log.info("stopping", { signal });
      void supervisor.stop("SIGTERM");
    });
  }
  void supervisor.done.then((code) => {
    log.info("stopped", { exitCode: code });
    process.exit(code);
  });
}
