/** Order steps taken as the party the rules expect (test/api/auth/rules.test.ts lists who may do what). */
import { type Caller, customer, driver, restaurant } from "./auth.ts";
import type { Harness } from "./harness.ts";

export const ACTOR = {
  confirm: "restaurant",
  assign: "restaurant",
  pickup: "driver",
  deliver: "driver",
  cancel: "customer",
} as const;
export type OrderStep = keyof typeof ACTOR;

export function orderParties(h: Harness) {
  async function party(orderId: string, role: "customer" | "restaurant" | "driver"): Promise<Caller> {
    const [row] = await h.sql<{ customer_id: string; restaurant_id: string; driver_id: string | null }[]>`
      select customer_id, restaurant_id, driver_id from orders where id = ${orderId}`;
    if (!row) throw new Error(`order ${orderId} is not in the test database`);
    if (role === "customer") return customer(row.customer_id);
    if (role === "restaurant") return restaurant(row.restaurant_id);
    return driver(row.driver_id ?? crypto.randomUUID()); // unassigned: some driver, who is not its driver
  }

  return {
    party,
    /** POST /orders as the customer itself, one item; the raw answer (its status and body are the test's to check). */
    place: (order: { customerId: string; restaurantId: string; delivery: { lat: number; lon: number }; item?: string; priceCents?: number }) =>
      h.call(
        "POST",
        "/orders",
        {
          customer_id: order.customerId,
          restaurant_id: order.restaurantId,
          delivery: order.delivery,
          items: [{ name: order.item ?? "Soup", qty: 1, price_cents: order.priceCents ?? 900 }],
        },
        { as: customer(order.customerId) },
      ),
    /** POST /orders/{id}/{step} as the order's own restaurant, driver or customer. */
    act: async (orderId: string, step: OrderStep) =>
      h.call("POST", `/orders/${orderId}/${step}`, undefined, { as: await party(orderId, ACTOR[step]) }),
  };
}
