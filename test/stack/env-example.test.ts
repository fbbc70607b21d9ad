// .env.example is the one list of settings and secrets a deployer reads: it must name every variable lib/config.ts
// parses and every secret bin/stack generates, and nothing else (a stale name is a lie to the reader).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

const example = new Set([...read(".env.example").matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));
// Names lib/config.ts reads: the helpers' name arguments ("NAME") and direct env.NAME reads.
const config = read("lib/config.ts");
const parsed = new Set([
  ...[...config.matchAll(/\(env, "([A-Z][A-Z0-9_]*)"/g)].map((m) => m[1]!),
  ...[...config.matchAll(/env\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!),
]);
parsed.delete("NODE_ENV"); // the runtime's own, not the project's
const stack = read("bin/stack");
const secrets = /SECRET_NAMES=\(([^)]*)\)/.exec(stack)![1]!.split(/\s+/).filter(Boolean);

test("every variable lib/config.ts parses is in .env.example", () => {
  expect([...parsed].filter((name) => !example.has(name))).toEqual([]);
});

test("every secret bin/stack generates is in .env.example, without a value", () => {
  const text = read(".env.example");
  expect(secrets.filter((name) => !example.has(name))).toEqual([]);
  expect(secrets.filter((name) => new RegExp(`^${name}=.+$`, "m").test(text))).toEqual([]);
});

test(".env.example names nothing that is neither parsed nor a secret", () => {
  expect([...example].filter((name) => !parsed.has(name) && !secrets.includes(name))).toEqual([]);
});
