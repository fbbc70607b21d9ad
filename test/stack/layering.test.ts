// Which part of the tree may import which: services never depend on the simulator, benchmarks, tests or dev tools,
// and benchmarks and dev tools never on tests. Every TypeScript file in the tree is checked, new ones included.
import { describe, expect, test } from "bun:test";
import { Glob } from "bun";
import { dirname, join, normalize } from "node:path";
import ts from "typescript";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Top-level directory → the top-level directories it must not import from. */
const FORBIDDEN: Record<string, string[]> = {
  api: ["sim", "bench", "test", "tools"],
  workers: ["sim", "bench", "test", "tools"],
  lib: ["sim", "bench", "test", "tools", "api", "workers"],
  // The phone's client could run in an app: nothing of the servers, the simulator or the dev tools.
  phone: ["sim", "bench", "test", "tools", "api", "workers"],
  db: ["sim", "bench", "test", "tools", "api", "workers"],
  sim: ["bench", "test", "tools"],
  tools: ["bench", "test", "sim"],
  bench: ["test"],
};

/** The forbidden imports of one file (`file` and the result relative to the project root). */
export function layeringViolations(file: string, specifiers: string[]): string[] {
  const forbidden = FORBIDDEN[file.split("/")[0]!] ?? [];
  return specifiers
    .filter((s) => s.startsWith("."))
    .map((s) => normalize(join(dirname(file), s)))
    .filter((target) => forbidden.includes(target.split("/")[0]!));
}

describe("layering", () => {
  test.each([
    ["api/app.ts", ["./modules/health/index.ts", "../lib/config.ts"], []],
    ["db/generate.ts", ["../sim/cities.ts"], ["sim/cities.ts"]],
    ["bench/e2e.ts", ["../test/support/db.ts", "../tools/pipeline.ts"], ["test/support/db.ts"]],
    ["workers/positions.ts", ["../tools/node-workers.ts", "elysia"], ["tools/node-workers.ts"]],
    ["lib/config.ts", ["../api/app.ts"], ["api/app.ts"]],
    ["phone/client.ts", ["../lib/position.ts", "../sim/payload.ts", "mqtt"], ["sim/payload.ts"]],
    ["test/workers/pipeline.test.ts", ["../../tools/pipeline.ts", "../../sim/fleet.ts"], []],
  ] as const)("the rule itself: %s importing %p → %p", (file, specifiers, expected) => {
    expect(layeringViolations(file, [...specifiers])).toEqual([...expected]);
  });

  test("no file in the tree imports across a forbidden line", async () => {
    const found: string[] = [];
    let checked = 0;
    for (const dir of Object.keys(FORBIDDEN)) {
      for await (const file of new Glob(`${dir}/**/*.{ts,tsx}`).scan({ cwd: ROOT })) {
        const code = await Bun.file(join(ROOT, file)).text();
        // TypeScript's own pre-processor: it sees type-only imports too (Bun's scanImports drops them).
        const specifiers = ts.preProcessFile(code, true, true).importedFiles.map((i) => i.fileName);
        for (const target of layeringViolations(file, specifiers)) found.push(`${file} imports ${target}`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(50);
    expect(found).toEqual([]);
  });
});
