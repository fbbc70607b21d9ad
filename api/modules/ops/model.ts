import { t } from "elysia";
import { DRIVER_STATES } from "../tracking/model.ts";

export const Viewport = t.Object({
  west: t.Number({ minimum: -180, maximum: 180 }),
  south: t.Number({ minimum: -90, maximum: 90 }),
  east: t.Number({ minimum: -180, maximum: 180 }),
  north: t.Number({ minimum: -90, maximum: 90 }),
  zoom: t.Number({ minimum: 0, maximum: 22 }),
});
export type Viewport = typeof Viewport.static;

const States = t.Array(t.UnionEnum(DRIVER_STATES), { description: "State names; drivers carry an index into it" });

export const OpsMap = t.Object({
  states: States,
  drivers_in_view: t.Number(),
  drivers: t.Union([
    t.Object({
      kind: t.Literal("dots"),
      points: t.Array(t.Number(), { description: "Flat triples: lat, lon, state index" }),
    }),
    t.Object({
      kind: t.Literal("cells"),
      resolution: t.Number(),
      cells: t.Array(t.Union([t.String(), t.Number()]), { description: "Flat triples: H3 cell (hex), state index, drivers" }),
    }),
  ]),
  density: t.Object({
    resolution: t.Number(),
    cells: t.Array(t.Union([t.String(), t.Number()]), { description: "Flat pairs: H3 cell (hex), available drivers" }),
  }),
});
export type OpsMap = typeof OpsMap.static;

export const OrdersByStatus = t.Record(t.String(), t.Number());
export type OrdersByStatus = typeof OrdersByStatus.static;

export const PipelineHealthModel = t.Object({
  at: t.String(),
  sources: t.Array(t.Object({ url: t.String(), up: t.Boolean(), error: t.Optional(t.String()) })),
  positions_applied_total: t.Number(),
  positions_per_second: t.Nullable(t.Number()),
  consumer_lag_messages: t.Number(),
  freshness_p99_seconds: t.Nullable(t.Number()),
  dlq_by_reason: t.Array(t.Object({ reason: t.String(), total: t.Number(), per_second: t.Nullable(t.Number()) })),
});

export const OpsSummary = t.Object({ orders: OrdersByStatus, pipeline: PipelineHealthModel });
