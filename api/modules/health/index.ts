import { Elysia } from "elysia";
import type { Registry } from "prom-client";
import type { AuthPlugin } from "../../auth/plugin.ts";
import { AppError } from "../../../lib/errors.ts";
import { ErrorModel } from "../../model.ts";
import { Alive, Ready } from "./model.ts";
import type { readinessService } from "./service.ts";

const tags = ["health"];

export function healthModule(deps: {
  readiness: ReturnType<typeof readinessService>;
  registry: Registry;
  auth: AuthPlugin;
}) {
  return new Elysia()
    .use(deps.auth)
    .get("/health", () => ({ status: "ok" as const }), {
      open: true,
      response: { 200: Alive },
      detail: { tags, summary: "The process is alive" },
    })
    .get(
      "/ready",
      async () => {
        const { checks, problems } = await deps.readiness.check();
        if (problems.length > 0) throw new AppError("UPSTREAM_UNAVAILABLE", `not ready: ${problems.join("; ")}`);
        return { status: "ready" as const, checks };
      },
      {
        open: true,
        response: { 200: Ready, 503: ErrorModel },
        detail: { tags, summary: "The database and Kafka answer and the live feed listens (503 otherwise)" },
      },
    )
    .get(
      "/metrics",
      async ({ set }) => {
        set.headers["content-type"] = deps.registry.contentType;
        return deps.registry.metrics();
      },
      // Counts and latencies describe the whole fleet's traffic: operations only.
      { auth: ["operations"], detail: { tags, summary: "Prometheus metrics (operations)" } },
    );
}
