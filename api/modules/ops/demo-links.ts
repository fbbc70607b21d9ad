/**
 * `bun run demo:links -- --ops-token <token>` (bin/stack up --demo runs it last): prints the operations map's URL
 * with the demo operations token, and the tracking page of one live order of the demo with a fresh tracking link.
 * Tokens go in the URL fragment, which the browser never sends to the server. Waits for the simulator's first live
 * order (up to --wait seconds); without one it says so and how to get the link later.
 */
import { parseArgs } from "node:util";
import { authConfig, config } from "../../../lib/config.ts";
import { connectDatabase } from "../../../lib/db.ts";
import { mintTrackingLink } from "../../auth/tracking-link.ts";
import { createTokenService } from "../../auth/tokens.ts";

const { values } = parseArgs({
  options: { "ops-token": { type: "string" }, wait: { type: "string", default: "90" } },
  strict: true,
});
const opsToken = values["ops-token"];
if (!opsToken) {
  console.error("usage: bun run demo:links -- --ops-token $(bun run --silent token -- --role operations --sub ops-demo)");
  process.exit(2);
}

const cfg = config();
const base = `http://${cfg.apiHost}:${cfg.apiPort}`;
console.log(`Operations map:  ${base}/ui/ops#token=${opsToken}`);

const sql = connectDatabase(cfg.databaseUrl, { max: 1, application: "demo-links" });
try {
  const deadline = Date.now() + Number(values.wait) * 1000;
  let orderId: string | undefined;
  while (!orderId && Date.now() < deadline) {
    const [row] = await sql<{ id: string }[]>`
      select id from orders where status in ('assigned', 'picked_up') order by created_at desc limit 1`;
    orderId = row?.id;
    if (!orderId) await Bun.sleep(1_000);
  }
  if (orderId) {
    const auth = authConfig();
    const link = await mintTrackingLink(createTokenService(auth), orderId, auth.trackingLinkTtlSeconds);
    console.log(`Customer page:   ${base}/ui/track#order=${orderId}&token=${link.token}`);
  } else {
    console.log("Customer page:   no live order yet; POST /orders answers with tracking.token for /ui/track#order=…&token=…");
  }
} finally {
  await sql.end({ timeout: 5 });
}
