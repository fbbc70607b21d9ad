/**
 * `bun run api [-- --processes N]`: the API, supervised (lib/supervisor.ts): restarted when it dies, stopped cleanly
 * on SIGTERM/SIGINT (each process drains its requests and live streams: api/server.ts). With N > 1, N processes
 * share API_PORT through SO_REUSEPORT and the kernel spreads connections over them, each with its own open-file limit
 * and live-stream ceiling.
 */
import { parseArgs } from "node:util";
import { runUntilSignalled, supervise } from "../lib/supervisor.ts";

// The API's own log style (`[api] …`), with the supervisor's fields as one JSON object.
const line = (message: string, fields?: Record<string, unknown>) => `[api] ${message}${fields ? ` ${JSON.stringify(fields)}` : ""}`;
const log = {
  info: (message: string, fields?: Record<string, unknown>) => console.log(line(message, fields)),
  warn: (message: string, fields?: Record<string, unknown>) => console.warn(line(message, fields)),
  error: (message: string, fields?: Record<string, unknown>) => console.error(line(message, fields)),
};

const { values } = parseArgs({ options: { processes: { type: "string", default: "1" } }, strict: true });
const processes = Number(values.processes);
if (!Number.isInteger(processes) || processes < 1 || processes > 64) {
  log.error(`--processes must be an integer from 1 to 64, got ${JSON.stringify(values.processes)}`);
  process.exit(2);
}

const server = new URL("./server.ts", import.meta.url).pathname;
const children = Array.from({ length: processes }, (_, i) => ({
  name: processes === 1 ? "api" : `api-${i + 1}`,
  command: [process.execPath, server],
  // Elysia reads NODE_ENV when it loads: the API always runs in production mode (api/production-mode.ts).
  env: { ...process.env, NODE_ENV: "production" },
}));
runUntilSignalled(supervise(children, log), log);
