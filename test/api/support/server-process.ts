/**
 * The API as a real process (`bun api/server.ts`, or supervised: `bun api/index.ts`) on a free port, for tests that need real sockets: what Bun answers
 * before our code runs, many concurrent streams, start-up checks. Its output is collected for assertions.
 */
import { freePort } from "../../../tools/free-port.ts";
import { waitFor } from "./wait.ts";

export { freePort };

export interface ApiProcess {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
  base: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts the API with `env` over this process's environment; resolves once GET `readyPath` answers 200. `entry` is
 * the script and its arguments: the server itself by default, or the supervisor (`api/index.ts`).
 */
export async function startApiProcess(
  env: Record<string, string>,
  readyPath = "/health",
  entry: string[] = ["api/server.ts"],
): Promise<ApiProcess> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let output = "";
  const proc = Bun.spawn(["bun", ...entry], {
    cwd: new URL("../../../", import.meta.url).pathname,
    env: { ...process.env, ...env, API_PORT: String(port) },
    stdout: "pipe",
    stderr: "pipe",
  });
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += new TextDecoder().decode(chunk);
  };
  void collect(proc.stdout as ReadableStream<Uint8Array>);
  void collect(proc.stderr as ReadableStream<Uint8Array>);
  await waitFor(
    `GET ${readyPath} to answer 200`,
    async () => (await fetch(`${base}${readyPath}`).catch(() => undefined))?.status === 200,
    30_000,
  );
  return {
    proc,
    port,
    base,
    output: () => output,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}
