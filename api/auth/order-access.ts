/**
 * Whether a caller may touch one order: operations any, a tracking link its own order, everyone else only orders
 * they are a party to (orders.customer_id / restaurant_id / driver_id = sub). Another party's order answers exactly
 * like an unknown one (404 NOT_FOUND, same message), so ids cannot be probed for existence; refusals decided from
 * the token alone (a tracking link for another order) are 403.
 */
import type { Sql } from "../../lib/db.ts";
import { AppError } from "../../lib/errors.ts";
import { sameId } from "./plugin.ts";
import type { Principal } from "./principal.ts";

interface Owners {
  customer_id: string;
  restaurant_id: string;
}

export interface OrderAccessOptions {
  /** Owners kept in memory: they never change after an order is placed, so an entry never goes stale. */
  maxCachedOrders?: number;
}

export function orderAccess(sql: Sql, options: OrderAccessOptions = {}) {
  const maxCached = options.maxCachedOrders ?? 100_000;
  const owners = new Map<string, Owners>();

  const remember = (orderId: string, row: Owners) => {
    if (owners.size >= maxCached) owners.delete(owners.keys().next().value!); // oldest first (insertion order)
    owners.set(orderId, { customer_id: row.customer_id, restaurant_id: row.restaurant_id });
  };

  async function parties(orderId: string) {
    const [row] = await sql<(Owners & { driver_id: string | null })[]>`
      select customer_id, restaurant_id, driver_id from orders where id = ${orderId}`;
    if (row) remember(orderId.toLowerCase(), row);
    return row;
  }

  const hidden = (orderId: string) => new AppError("NOT_FOUND", `order ${orderId} does not exist`);

  return {
    /** Resolves when `principal` may act on the order, throws NOT_FOUND (or FORBIDDEN for a link) otherwise. */
    async check(principal: Principal, orderId: string): Promise<void> {
      switch (principal.role) {
        case "operations":
          return;
        case "tracker":
          if (!sameId(orderId, principal.sub)) throw new AppError("FORBIDDEN", "this tracking link is for another order");
          return;
        case "driver": {
          // Assignment changes over an order's life: always read it.
          const row = await parties(orderId);
          if (row?.driver_id !== principal.sub) throw hidden(orderId);
          return;
        }
        case "customer":
        case "restaurant": {
          const row = owners.get(orderId.toLowerCase()) ?? (await parties(orderId));
          const owner = principal.role === "customer" ? row?.customer_id : row?.restaurant_id;
          if (owner !== principal.sub) throw hidden(orderId);
          return;
        }
      }
    },
  };
}

export type OrderAccess = ReturnType<typeof orderAccess>;
