// Table-driven: every (state, event) pair of both machines → next state or the machine's SQLSTATE.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sqlState } from "../../lib/db.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await freshDatabase("state_machines");
});
afterAll(() => db?.drop());

const DRIVER_STATES = ["offline", "available", "assigned", "at_restaurant", "delivering", "arriving"] as const;
const DRIVER_EVENTS = ["online", "assign", "enter_restaurant", "pickup", "enter_delivery", "deliver", "cancel",
  "resume_assigned", "resume_delivering", "sign_off", "timeout"] as const;
// The machine of DESIGN.md; every pair not listed must be refused.
const DRIVER_ALLOWED: Record<string, string> = {
  "offline/online": "available",
  "offline/resume_assigned": "assigned",
  "offline/resume_delivering": "delivering",
  "available/assign": "assigned",
  "assigned/enter_restaurant": "at_restaurant",
  "assigned/cancel": "available",
  "at_restaurant/cancel": "available",
  "at_restaurant/pickup": "delivering",
  "delivering/enter_delivery": "arriving",
  "arriving/deliver": "available",
  ...Object.fromEntries(DRIVER_STATES.filter((s) => s !== "offline").flatMap((s) => [
    [`${s}/sign_off`, "offline"],
    [`${s}/timeout`, "offline"],
  ])),
};

const ORDER_STATES = ["created", "confirmed", "assigned", "picked_up", "delivered", "cancelled"] as const;
const ORDER_EVENTS = ["confirm", "assign", "pickup", "deliver", "cancel"] as const;
const ORDER_ALLOWED: Record<string, string> = {
  "created/confirm": "confirmed",
  "confirmed/assign": "assigned",
  "assigned/pickup": "picked_up",
  "picked_up/deliver": "delivered",
  "created/cancel": "cancelled",
  "confirmed/cancel": "cancelled",
  "assigned/cancel": "cancelled",
};

async function outcome(query: Promise<{ next: string }[]>): Promise<string> {
  try {
    return (await query)[0]!.next;
  } catch (error) {
    return `error ${sqlState(error)}`;
  }
}

describe("driver machine", () => {
  const rows = DRIVER_STATES.flatMap((s) => DRIVER_EVENTS.map((e) => [s, e, DRIVER_ALLOWED[`${s}/${e}`] ?? "error T1001"]));
  test.each(rows)("%s + %s → %s", async (state, event, expected) => {
    const [{ id }] = (await db.sql`insert into drivers (name) values ('t') returning id`) as unknown as [{ id: string }];
    await db.sql`insert into driver_state (driver_id, status) values (${id}, ${state}::driver_status)`;
    const got = await outcome(db.sql<{ next: string }[]>`select status::text as next from driver_transition(${id}, ${event})`);
    expect(got).toBe(expected!);
    if (!expected!.startsWith("error")) {
      const [h] = await db.sql<{ from_status: string; to_status: string }[]>`
        select from_status, to_status from state_history where entity_id = ${id}`;
      expect(h).toEqual({ from_status: state!, to_status: expected! });
    }
  });

  test("a refusal names the driver, the event and the state", async () => {
    const [{ id }] = (await db.sql`insert into drivers (name) values ('t') returning id`) as unknown as [{ id: string }];
    await db.sql`insert into driver_state (driver_id, status) values (${id}, 'available')`;
    expect(db.sql`select driver_transition(${id}, 'pickup')`).rejects.toThrow(
      `driver ${id} cannot take event "pickup" in state available`,
    );
  });

  test("an unknown driver is T1404", async () => {
    expect(await outcome(db.sql`select driver_transition(gen_random_uuid(), 'online') as next`)).toBe("error T1404");
  });
});

describe("order machine", () => {
  const rows = ORDER_STATES.flatMap((s) => ORDER_EVENTS.map((e) => [s, e, ORDER_ALLOWED[`${s}/${e}`] ?? "error T1002"]));
  test.each(rows)("%s + %s → %s", async (state, event, expected) => {
    // The order's driver sits in the state the order event needs, so only the order machine decides.
    const driverState = { assign: "available", pickup: "at_restaurant", deliver: "arriving", cancel: "assigned" }[
      event as string
    ] ?? "available";
    const [ids] = await db.sql<{ driver: string; customer: string; restaurant: string }[]>`
      with d as (insert into drivers (name) values ('d') returning id),
           s as (insert into driver_state (driver_id, status) select id, ${driverState}::driver_status from d),
           c as (insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.99 40.73)') returning id),
           r as (insert into restaurants (name, location, h3) values ('r', 'SRID=4326;POINT(-73.98 40.75)', 1) returning id)
      select d.id driver, c.id customer, r.id restaurant from d, c, r`;
    const hasDriver = ["assigned", "picked_up", "delivered"].includes(state as string);
    const [order] = await db.sql<{ id: string }[]>`
      insert into orders (customer_id, restaurant_id, delivery_location, status, driver_id)
      values (${ids!.customer}, ${ids!.restaurant}, 'SRID=4326;POINT(-73.99 40.73)', ${state}::order_status,
              ${hasDriver ? ids!.driver : null})
      returning id`;
    if (hasDriver && state !== "delivered") {
      await db.sql`update driver_state set current_order_id = ${order!.id} where driver_id = ${ids!.driver}`;
    }
    const driverArg = event === "assign" ? ids!.driver : null;
    const got = await outcome(
      db.sql<{ next: string }[]>`select status::text as next from order_transition(${order!.id}, ${event}, ${driverArg})`,
    );
    expect(got).toBe(expected!);
  });

  test("a refusal reads like the machine", async () => {
    const [o] = await db.sql<{ id: string }[]>`
      insert into orders (customer_id, restaurant_id, delivery_location, status)
      select (select id from customers limit 1), (select id from restaurants limit 1),
             'SRID=4326;POINT(-73.99 40.73)', 'delivered' returning id`;
    expect(db.sql`select order_transition(${o!.id}, 'pickup')`).rejects.toThrow(
      `order ${o!.id} cannot go from delivered to picked_up`,
    );
  });
});
