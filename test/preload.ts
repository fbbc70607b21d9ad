// Loaded before every test file (bunfig.toml). Tests talk to the servers `bin/stack up` started, with the identities
// and secrets it generated (.stack/tools.env, .stack/secrets.env); what the environment already sets wins.
import { existsSync, readFileSync } from "node:fs";

process.env.TZ = "UTC";

for (const file of ["tools.env", "secrets.env"]) {
  const path = new URL(`../.stack/${file}`, import.meta.url).pathname;
  if (!existsSync(path)) continue;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (match && process.env[match[1]!] === undefined) process.env[match[1]!] = match[2]!;
  }
}
