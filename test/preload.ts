// Loaded before every test file (bunfig.toml). Tests talk to the servers `bin/stack up` started.
process.env.TZ = "UTC";
