// `bun run api -- --processes 2`: two API processes on one port (SO_REUSEPORT) under the supervisor (api/index.ts).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { type ApiProcess, startApiProcess } from "./support/server-process.ts";
import { waitFor } from "./support/wait.ts";

let db: TestDatabase;
let api: ApiProcess;

beforeAll(async () => {
  db = await freshDatabase("api_index");
  api = await startApiProcess({ DATABASE_URL: db.url }, "/health", ["api/index.ts", "--processes", "2"]);
}, 60_000);

afterAll(async () => {
  api?.proc.kill("SIGKILL");
  await db?.drop();
}, 60_000);

const listening = () => api.output().split("[api] listening on").length - 1;
const childPids = () => [...api.output().matchAll(/child started \{"child":"api-\d","pid":(\d+)\}/g)].map((m) => Number(m[1]));

test("both processes listen on the one port; a killed one is replaced; SIGTERM drains them all (exit 0)", async () => {
  await waitFor("two API processes listening", () => listening() === 2, 60_000);
  expect(api.output().match(/listening on http:\/\/[^ ]+/g)?.map((l) => new URL(l.slice(13)).port)).toEqual([
    String(api.port),
    String(api.port),
  ]);
  const [first, second] = childPids();
  expect(first).not.toBe(second);

  process.kill(first!, "SIGKILL");
  await waitFor("a third API process listening", () => listening() === 3, 60_000);
  expect(childPids()).toHaveLength(3);
  expect((await fetch(`${api.base}/health`)).status).toBe(200);

  api.proc.kill("SIGTERM");
  expect(await api.proc.exited).toBe(0);
  expect(api.output().split("child stopped").length - 1).toBe(2);
}, 120_000);

test("--processes must be a whole number from 1 to 64 (exit 2, nothing started)", async () => {
  const proc = Bun.spawn(["bun", "api/index.ts", "--processes", "zero"], {
    cwd: new URL("../../", import.meta.url).pathname,
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(await proc.exited).toBe(2);
  expect(await new Response(proc.stderr).text()).toContain("--processes must be an integer from 1 to 64");
});
