import type postgres from "postgres";
import { config } from "../../../lib/config.ts";
import { type Sql, sqlState } from "../../../lib/db.ts";
import { AppError } from "../../../lib/errors.ts";
import { isoOrNull } from "../../model.ts";
import { areaArguments, assignInWideningAreas, searchAreaCache } from "./assignment.ts";
import { assignProposed, type DispatchDeps } from "./dispatcher.ts";
import type { NewOrder, Order, OrderEvent } from "./model.ts";

interface OrderRow {
  id: string;
  customer_id: string;
  restaurant_id: string;
  status: Order["status"];
  items: Order["items"];
  eta_seconds: number | null;
  delivery_lat: number;
  delivery_lon: number;
  driver_id: string | null;
  driver_name: string | null;
  created_at: Date;
  confirmed_at: Date | null;
  assigned_at: Date | null;
  picked_up_at: Date | null;
  delivered_at: Date | null;
  cancelled_at: Date | null;
  updated_at: Date;
}

function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    customer_id: row.customer_id,
    restaurant_id: row.restaurant_id,
    status: row.status,
    delivery: { lat: row.delivery_lat, lon: row.delivery_lon },
    items: row.items,
    total_cents: orderTotalCents(row.items),
    driver: row.driver_id === null ? null : { id: row.driver_id, name: row.driver_name ?? "" },
    eta_seconds: row.eta_seconds,
    created_at: row.created_at.toISOString(),
    confirmed_at: isoOrNull(row.confirmed_at),
    assigned_at: isoOrNull(row.assigned_at),
    picked_up_at: isoOrNull(row.picked_up_at),
    delivered_at: isoOrNull(row.delivered_at),
    cancelled_at: isoOrNull(row.cancelled_at),
    updated_at: row.updated_at.toISOString(),
  };
}

/** Business limits of a new order (config ORDER_MAX_TOTAL_CENTS, ORDER_MAX_DELIVERY_KM). */
export interface OrderLimits {
  maxTotalCents: number;
  maxDeliveryKm: number;
}

export const orderLimitsFromConfig = (): OrderLimits => ({
  maxTotalCents: config().orderMaxTotalCents,
  maxDeliveryKm: config().orderMaxDeliveryKm,
});

export const orderTotalCents = (items: NewOrder["items"]) =>
  items.reduce((sum, item) => sum + item.qty * item.price_cents, 0);

export function ordersService(sql: Sql, limits: OrderLimits = orderLimitsFromConfig(), dispatch?: DispatchDeps) {
  /** The API's view of orders rows `o` (a table or a function's result), with the driver's name. */
  const selectOrder = (source: postgres.Fragment) => sql<OrderRow[]>`
    with o as (${source})
    select o.id, o.customer_id, o.restaurant_id, o.status, o.items,
           -- The live leg's ETA sits on the driver's row (refreshed by every applied position). The status test
           -- matters: this statement's snapshot predates the transition function it wraps.
           case when o.status in ('assigned', 'picked_up')
                then coalesce((select ds.eta_seconds from driver_state ds
                               where ds.driver_id = o.driver_id and ds.current_order_id = o.id), o.eta_seconds)
           end as eta_seconds,
           st_y(o.delivery_location::geometry) as delivery_lat, st_x(o.delivery_location::geometry) as delivery_lon,
           o.driver_id, d.name as driver_name, o.created_at, o.confirmed_at, o.assigned_at, o.picked_up_at,
           o.delivered_at, o.cancelled_at, o.updated_at
    from o left join drivers d on d.id = o.driver_id`;

  const one = async (source: postgres.Fragment, orderId: string): Promise<Order> => {
    const [row] = await selectOrder(source);
    if (!row) throw new AppError("NOT_FOUND", `order ${orderId} does not exist`);
    return toOrder(row);
  };

  const transition = (orderId: string, event: OrderEvent) =>
    one(sql`select * from order_transition(${orderId}, ${event})`, orderId);

  let areasAround: ReturnType<typeof searchAreaCache> | undefined;

  /** The order given to the nearest driver, or undefined when no driver is free within reach. */
  const assignNearest = async (orderId: string): Promise<Order | undefined> => {
    const [restaurant] = await sql<{ lat: number; lon: number }[]>`
      select st_y(r.location::geometry) as lat, st_x(r.location::geometry) as lon
      from orders o join restaurants r on r.id = o.restaurant_id where o.id = ${orderId}`;
    if (!restaurant) throw new AppError("NOT_FOUND", `order ${orderId} does not exist`);
    // The index proposes its nearest few and the database claims the nearest of them still free (0017); when it has
    // no recent snapshot, proposes nobody, or none of its proposals is still free, the exact search over cells decides.
    if (dispatch && (await assignProposed(dispatch, orderId, restaurant.lat, restaurant.lon))) {
      return one(sql`select * from orders where id = ${orderId}`, orderId);
    }
    areasAround ??= searchAreaCache(config().h3Resolution);
    return assignInWideningAreas(areasAround(restaurant.lat, restaurant.lon), (area) =>
      one(sql`select * from assign_nearest_driver(${orderId}, ${areaArguments(sql, area)})`, orderId),
    );
  };

  return {
    find: (orderId: string) => one(sql`select * from orders where id = ${orderId}`, orderId),

    /**
     * The total is pure input, checked here; the distance needs the restaurant's location, so the insert itself
     * only happens within reach (one statement, where the data is), and a second look says why when it did not.
     */
    async create(input: NewOrder): Promise<Order> {
      const total = orderTotalCents(input.items);
      if (total > limits.maxTotalCents) {
        throw new AppError("ORDER_LIMIT", `the order totals ${total} cents, above the limit of ${limits.maxTotalCents}`);
      }
      const delivery = () => sql`st_setsrid(st_makepoint(${input.delivery.lon}, ${input.delivery.lat}), 4326)::geography`;
      const reachM = limits.maxDeliveryKm * 1000;
      let rows: OrderRow[];
      try {
        rows = await selectOrder(
          sql`insert into orders (customer_id, restaurant_id, delivery_location, items)
              select ${input.customer_id}, r.id, ${delivery()}, ${sql.json(input.items)}
              from restaurants r
              where r.id = ${input.restaurant_id} and st_dwithin(r.location, ${delivery()}, ${reachM})
              returning *`,
        );
      } catch (error) {
        if (sqlState(error) !== "23503") throw error; // foreign key: the customer is unknown
        const constraint = (error as { constraint_name?: string }).constraint_name ?? "";
        throw constraint.includes("customer")
          ? new AppError("NOT_FOUND", `customer ${input.customer_id} does not exist`, { cause: error })
          : new AppError("NOT_FOUND", `restaurant ${input.restaurant_id} does not exist`, { cause: error });
      }
      if (rows[0]) return toOrder(rows[0]);
      const [restaurant] = await sql<{ metres: number }[]>`
        select st_distance(location, ${delivery()}) as metres from restaurants where id = ${input.restaurant_id}`;
      if (!restaurant) throw new AppError("NOT_FOUND", `restaurant ${input.restaurant_id} does not exist`);
      const km = (restaurant.metres / 1000).toFixed(1);
      throw new AppError(
        "ORDER_LIMIT",
        `the delivery point is ${km} km from the restaurant, beyond the limit of ${limits.maxDeliveryKm} km`,
      );
    },

    /**
     * Confirms, then tries to assign the nearest driver. No driver in reach is not an error for the customer: the
     * order stays `confirmed` (driver null) and POST /orders/{id}/assign retries.
     */
    async confirm(orderId: string): Promise<Order> {
      const confirmed = await transition(orderId, "confirm");
      return (await assignNearest(orderId)) ?? confirmed;
    },

    async assign(orderId: string): Promise<Order> {
      const assigned = await assignNearest(orderId);
      if (!assigned) throw new AppError("NO_DRIVER_AVAILABLE", `no available driver near the restaurant of order ${orderId}`);
      return assigned;
    },

    transition,
  };
}
