// Loaded before every test file (bunfig.toml). Tests talk to the servers `bin/stack up` started, with the identities
// and secrets it generated (lib/stack-env.ts); what the environment already sets wins.
import "../lib/stack-env.ts";

process.env.TZ = "UTC";
