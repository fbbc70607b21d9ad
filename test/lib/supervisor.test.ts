// The supervisor behind `bun run workers` and `bun run api`: its restart rules as a table, then real child processes.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decideOnExit, EXIT_CONFIG, restartDelayMs, supervise, type RestartPolicy } from "../../lib/supervisor.ts";
import { waitFor } from "../api/support/wait.ts";

const POLICY: RestartPolicy = {
  initialDelayMs: 100,
  maxDelayMs: 1_000,
  healthyAfterMs: 10_000,
  maxFailuresInARow: 3,
  stopTimeoutMs: 30_000,
};

describe("decideOnExit", () => {
  test.each([
    // code, ran for (ms), failures in a row before → decision
    [1, 50, 0, { action: "restart", delayMs: 100, failuresInARow: 1 }],
    [1, 50, 1, { action: "restart", delayMs: 200, failuresInARow: 2 }],
    [1, 50, 2, { action: "restart", delayMs: 400, failuresInARow: 3 }],
    [1, 50, 3, { action: "give-up", exitCode: 1, reason: "crash_loop" }],
    // ran long enough to count as started: the count starts over
    [1, 10_000, 3, { action: "restart", delayMs: 100, failuresInARow: 1 }],
    [0, 50, 0, { action: "restart", delayMs: 100, failuresInARow: 1 }],
    [null, 50, 0, { action: "restart", delayMs: 100, failuresInARow: 1 }],
    [EXIT_CONFIG, 10_000, 0, { action: "give-up", exitCode: EXIT_CONFIG, reason: "config_refused" }],
  ] as const)("exit %p after %p ms with %p failures before", (code, ranForMs, failuresInARow, expected) => {
    expect(decideOnExit(POLICY, { code, ranForMs, failuresInARow })).toEqual(expected);
  });

  test("the pause doubles up to its ceiling", () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => restartDelayMs(POLICY, n))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });
});

function recordingLog() {
  const lines: { message: string; fields?: Record<string, unknown> }[] = [];
  const push = (message: string, fields?: Record<string, unknown>) => void lines.push({ message, fields });
  return { lines, log: { info: push, warn: push, error: push }, count: (m: string) => lines.filter((l) => l.message === m).length };
}

const bunChild = (name: string, script: string) => ({ name, command: [process.execPath, "-e", script] });
const fast: RestartPolicy = { ...POLICY, initialDelayMs: 10, maxDelayMs: 20 };

describe("supervise (real processes)", () => {
  test("a child that keeps dying at start is restarted, then the supervisor gives up with 1", async () => {
    const { log, count } = recordingLog();
    const supervisor = supervise([bunChild("crasher", "process.exit(3)")], log, fast);
    expect(await supervisor.done).toBe(1);
    expect(count("child started")).toBe(fast.maxFailuresInARow + 1);
    expect(count("child failed, stopping the service")).toBe(1);
  });

  test("a child that refuses its configuration is not restarted, and its code is the supervisor's", async () => {
    const { log, count } = recordingLog();
    const supervisor = supervise([bunChild("misconfigured", `process.exit(${EXIT_CONFIG})`)], log, fast);
    expect(await supervisor.done).toBe(EXIT_CONFIG);
    expect(count("child started")).toBe(1);
  });

  test("a child that ran fine before dying is restarted every time; stop ends cleanly", async () => {
    const { log, count } = recordingLog();
    const supervisor = supervise([bunChild("flaky", "setTimeout(() => process.exit(1), 20)")], log, {
      ...fast,
      healthyAfterMs: 0,
      maxFailuresInARow: 1,
    });
    await waitFor("a fourth start", async () => count("child started") >= 4, 30_000);
    expect(await supervisor.stop()).toBe(0);
    expect(await supervisor.done).toBe(0);
  });

  test("SIGTERM reaches every child; the supervisor ends 0 when they stop cleanly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "supervisor-"));
    const { log } = recordingLog();
    const graceful = (name: string) =>
      bunChild(name, `process.on("SIGTERM", () => { require("fs").writeFileSync("${dir}/${name}.stopped", ""); process.exit(0); });
        require("fs").writeFileSync("${dir}/${name}.ready", ""); setInterval(() => {}, 1000);`);
    const supervisor = supervise([graceful("a"), graceful("b")], log, fast);
    await waitFor("both children ready", async () => existsSync(`${dir}/a.ready`) && existsSync(`${dir}/b.ready`), 30_000);
    expect(await supervisor.stop()).toBe(0);
    expect([existsSync(`${dir}/a.stopped`), existsSync(`${dir}/b.stopped`)]).toEqual([true, true]);
  });

  test("a child that ignores SIGTERM is killed after the stop timeout, and the stop is unclean (1)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "supervisor-"));
    const { log, count } = recordingLog();
    const stubborn = bunChild("stubborn", `process.on("SIGTERM", () => {});
      require("fs").writeFileSync("${dir}/ready", ""); setInterval(() => {}, 1000);`);
    const supervisor = supervise([stubborn], log, { ...fast, stopTimeoutMs: 200 });
    await waitFor("the child ready", async () => existsSync(`${dir}/ready`), 30_000);
    expect(await supervisor.stop()).toBe(1);
    expect(count("child did not stop in time, killing it")).toBe(1);
  });
});
