/**
 * Who is calling: the verified claims of a bearer token. `sub` is the customer, restaurant or driver UUID, an
 * operator's name, or for a `tracker` (the shareable per-order link) the one order it may follow.
 */

export const ROLES = ["customer", "restaurant", "driver", "operations", "tracker"] as const;
export type Role = (typeof ROLES)[number];

/** Roles whose `sub` names a row of the database (customers, restaurants, drivers, orders). */
export const UUID_SUBJECT_ROLES: readonly Role[] = ["customer", "restaurant", "driver", "tracker"];

export interface Principal {
  role: Role;
  sub: string;
}

export const isRole = (value: unknown): value is Role => typeof value === "string" && ROLES.includes(value as Role);

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Operator names: what an IdP would put in `sub` for staff. */
export const OPERATOR_PATTERN = /^[\w.@-]{1,100}$/;
