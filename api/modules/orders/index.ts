import { Elysia } from "elysia";
import type { Sql } from "../../../lib/db.ts";
import { ErrorModel, errorResponses } from "../../model.ts";
import { NewOrder, Order, OrderParams } from "./model.ts";
import { ordersService } from "./service.ts";

const refused = { ...errorResponses, 409: ErrorModel };
const tags = ["orders"];

export function ordersModule(deps: { sql: Sql }) {
  const orders = ordersService(deps.sql);
  const byId = { params: OrderParams, response: { 200: Order, ...refused } };

  return new Elysia({ prefix: "/orders" })
    .post("/", async ({ body, status }) => status(201, await orders.create(body)), {
      body: NewOrder,
      response: { 201: Order, ...errorResponses },
      detail: { tags, summary: "Place an order (the mobile app)" },
    })
    .get("/:order_id", ({ params }) => orders.find(params.order_id), {
      params: OrderParams,
      response: { 200: Order, ...errorResponses },
      detail: { tags, summary: "One order" },
    })
    .post("/:order_id/confirm", ({ params }) => orders.confirm(params.order_id), {
      ...byId,
      detail: {
        tags,
        summary: "Confirm, then assign the nearest available driver",
        description: "When no driver is in reach the order stays confirmed with driver null; retry with /assign.",
      },
    })
    .post("/:order_id/assign", ({ params }) => orders.assign(params.order_id), {
      ...byId,
      detail: { tags, summary: "Assign the nearest available driver (409 NO_DRIVER_AVAILABLE when none)" },
    })
    .post("/:order_id/pickup", ({ params }) => orders.transition(params.order_id, "pickup"), {
      ...byId,
      detail: { tags, summary: "The driver picked the order up (driver must be at the restaurant)" },
    })
    .post("/:order_id/deliver", ({ params }) => orders.transition(params.order_id, "deliver"), {
      ...byId,
      detail: { tags, summary: "Delivered (driver must be arriving)" },
    })
    .post("/:order_id/cancel", ({ params }) => orders.transition(params.order_id, "cancel"), {
      ...byId,
      detail: { tags, summary: "Cancel (before pickup)" },
    });
}
