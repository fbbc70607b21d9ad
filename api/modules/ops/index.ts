/**
 * The operations page's data, for the operations role only: the map of the viewport (GET /ops/map) and the
 * summary panel, orders by status and the pipeline's health (GET /ops/summary). The page polls both every second.
 */
import { Elysia } from "elysia";
import type { Sql } from "../../../lib/db.ts";
import type { AuthPlugin } from "../../auth/plugin.ts";
import { ErrorModel } from "../../model.ts";
import { mapService } from "./map-service.ts";
import { OpsMap, OpsSummary, Viewport } from "./model.ts";
import type { PipelineHealthReader } from "./pipeline-health.ts";

const tags = ["operations"];
const refusals = { 400: ErrorModel, 401: ErrorModel, 403: ErrorModel };

export interface OpsDeps {
  sql: Sql;
  auth: AuthPlugin;
  pipeline: PipelineHealthReader;
  /** H3 resolution of the stored driver cells (H3_RESOLUTION). */
  h3Resolution: number;
}

export function opsModule(deps: OpsDeps) {
  const maps = mapService(deps.sql, deps.h3Resolution);
  return new Elysia({ prefix: "/ops" })
    .use(deps.auth)
    .get("/map", ({ query }) => maps.map(query), {
      auth: ["operations"],
      query: Viewport,
      response: { 200: OpsMap, ...refusals },
      detail: {
        tags,
        summary: "Drivers in a viewport (dots, or counts per H3 cell past a few thousand) and available-driver density",
      },
    })
    .get(
      "/summary",
      async () => {
        const [orders, pipeline] = await Promise.all([maps.ordersByStatus(), deps.pipeline.current()]);
        return { orders, pipeline };
      },
      {
        auth: ["operations"],
        response: { 200: OpsSummary, ...refusals },
        detail: { tags, summary: "Orders by status and the ingest pipeline's health (from the workers' /metrics)" },
      },
    );
}
