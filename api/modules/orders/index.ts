import { Elysia, t } from "elysia";
import type { Sql } from "../../../lib/db.ts";
import { AppError } from "../../../lib/errors.ts";
import type { OrderAccess } from "../../auth/order-access.ts";
import { type AuthPlugin, sameId } from "../../auth/plugin.ts";
import { mintTrackingLink, TrackingLink } from "../../auth/tracking-link.ts";
import type { TokenService } from "../../auth/tokens.ts";
import { ErrorModel, errorResponses } from "../../model.ts";
import { NewOrder, Order, OrderParams } from "./model.ts";
import type { DispatchDeps } from "./dispatcher.ts";
import { ordersService } from "./service.ts";

export interface OrdersModuleDeps {
  sql: Sql;
  auth: AuthPlugin;
  access: OrderAccess;
  tokens: TokenService;
  trackingLinkTtlSeconds: number;
  /** The in-memory index and batched assignments (server.ts); absent, assignments search H3 cells only. */
  dispatch?: DispatchDeps;
}

const guarded = { ...errorResponses, 401: ErrorModel, 403: ErrorModel };
const refused = { ...guarded, 409: ErrorModel };
const tags = ["orders"];
const PlacedOrder = t.Composite([Order, t.Object({ tracking: TrackingLink })]);

export function ordersModule(deps: OrdersModuleDeps) {
  const orders = ordersService(deps.sql, undefined, deps.dispatch);
  const byId = { params: OrderParams, response: { 200: Order, ...refused } };

  return (
    new Elysia({ prefix: "/orders" })
      .use(deps.auth)
      .post(
        "/",
        async ({ body, status, principal }) => {
          // Customers order for themselves; nobody orders on a customer's behalf.
          if (!sameId(body.customer_id, principal.sub)) {
            throw new AppError("FORBIDDEN", "a customer may place orders only for itself");
          }
          const order = await orders.create(body);
          const tracking = await mintTrackingLink(deps.tokens, order.id, deps.trackingLinkTtlSeconds);
          return status(201, { ...order, tracking });
        },
        {
          auth: ["customer"],
          body: NewOrder,
          response: { 201: PlacedOrder, ...guarded },
          detail: {
            tags,
            summary: "Place an order (the customer itself); answers with a shareable tracking link",
          },
        },
      )
      // Ownership is checked before each action: another party's order answers 404 like an unknown one.
      .get(
        "/:order_id",
        async ({ params, principal }) => {
          await deps.access.check(principal, params.order_id);
          return orders.find(params.order_id);
        },
        {
          auth: ["customer", "restaurant", "driver", "operations"],
          params: OrderParams,
          response: { 200: Order, ...guarded },
          detail: { tags, summary: "One order (its customer, restaurant, assigned driver; operations)" },
        },
      )
      .post(
        "/:order_id/confirm",
        async ({ params, principal }) => {
          await deps.access.check(principal, params.order_id);
          return orders.confirm(params.order_id);
        },
        {
          ...byId,
          auth: ["restaurant"],
          detail: {
            tags,
            summary: "Confirm, then assign the nearest available driver (the order's restaurant)",
            description: "When no driver is in reach the order stays confirmed with driver null; retry with /assign.",
          },
        },
      )
      .post(
        "/:order_id/assign",
        async ({ params, principal }) => {
          await deps.access.check(principal, params.order_id);
          return orders.assign(params.order_id);
        },
        {
          ...byId,
          auth: ["restaurant"],
          detail: { tags, summary: "Assign the nearest available driver (409 NO_DRIVER_AVAILABLE when none)" },
        },
      )
      .post(
        "/:order_id/pickup",
        async ({ params, principal }) => {
          await deps.access.check(principal, params.order_id);
          return orders.transition(params.order_id, "pickup");
        },
        {
          ...byId,
          auth: ["driver"],
          detail: { tags, summary: "The assigned driver picked the order up (driver must be at the restaurant)" },
        },
      )
      .post(
        "/:order_id/deliver",
        async ({ params, principal }) => {
          await deps.access.check(principal, params.order_id);
          return orders.transition(params.order_id, "deliver");
        },
        {
          ...byId,
          auth: ["driver"],
          detail: { tags, summary: "Delivered, by the assigned driver (driver must be arriving)" },
        },
      )
      .post(
        "/:order_id/cancel",
        async ({ params, principal }) => {
          await deps.access.check(principal, params.order_id);
          return orders.transition(params.order_id, "cancel");
        },
        {
          ...byId,
          auth: ["customer", "restaurant"],
          detail: { tags, summary: "Cancel before pickup (the order's customer or restaurant)" },
        },
      )
  );
}
