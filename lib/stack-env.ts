/**
 * The development stack's identities for tools run by hand (tests, benchmarks): loads `.stack/tools.env` then
 * `.stack/secrets.env`, both written by bin/stack, into process.env for the names not already set. Preloaded by
 * bunfig.toml's test preload and by the bench scripts (package.json); services never load it (bin/stack hands each
 * its own identity).
 */
import { existsSync, readFileSync } from "node:fs";

for (const file of ["tools.env", "secrets.env"]) {
  const path = new URL(`../.stack/${file}`, import.meta.url).pathname;
  if (!existsSync(path)) continue;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (match && process.env[match[1]!] === undefined) process.env[match[1]!] = match[2]!;
  }
}
