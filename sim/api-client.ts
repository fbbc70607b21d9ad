/**
 * The mocked mobile app's view of the HTTP API (DESIGN.md, HTTP). It reads answers leniently — the order at the top
 * level or under `order`, the driver as `driver_id` or `driver.id` — because only the documented contract is fixed.
 */
import type { Role } from "../api/auth/principal.ts";
import type { LatLon } from "../lib/cities.ts";
import type { IdentityProvider } from "./identity.ts";
import type { OrderItem } from "../lib/names.ts";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export interface PlaceOrder {
  customer_id: string;
  restaurant_id: string;
  delivery: LatLon;
  items: OrderItem[];
}

export interface OrderView {
  id: string;
  status: string | undefined;
  driverId: string | null;
}

/** `assign` retries the nearest-driver search for a confirmed order that got no driver. */
export type OrderEvent = "confirm" | "assign" | "pickup" | "deliver" | "cancel";

/** Who takes a step: the order's restaurant (confirm, assign), driver (pickup, deliver) or customer (cancel). */
export interface Actor {
  role: Exclude<Role, "operations" | "tracker">;
  id: string;
}

/** What POST /drivers/{id}/mqtt-credentials answers: the phone's MQTT sign-in. */
export interface MqttSignIn {
  username: string;
  password: string;
  client_id: string;
  mqtt_url: string;
}

export interface ApiClient {
  /** As the order's customer. */
  placeOrder(order: PlaceOrder): Promise<OrderView>;
  orderEvent(orderId: string, event: OrderEvent, actor: Actor): Promise<OrderView>;
  /** The driver's state (`available`, `at_restaurant`, …) as GET /drivers/{id} reports it (as the driver). */
  driverState(driverId: string): Promise<string | undefined>;
  /** The driver signs in to MQTT: credentials that publish only under drivers/{id}/. */
  mqttSignIn(driverId: string): Promise<MqttSignIn>;
  /** The driver's MQTT credentials stop working (sign-off). */
  mqttSignOff(driverId: string): Promise<void>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export function readOrder(body: unknown): OrderView {
  const order = isRecord(body) && isRecord(body.order) ? body.order : body;
  if (!isRecord(order) || typeof order.id !== "string") {
    throw new ApiError(0, "BAD_RESPONSE", `no order in the answer: ${JSON.stringify(body).slice(0, 200)}`);
  }
  const driver = isRecord(order.driver) ? order.driver : isRecord(body) && isRecord(body.driver) ? body.driver : undefined;
  const driverId = str(order.driver_id) ?? str(order.driverId) ?? str(driver?.id) ?? null;
  return { id: order.id, status: str(order.status), driverId };
}

export function readDriverState(body: unknown): string | undefined {
  if (!isRecord(body)) return undefined;
  const inner = isRecord(body.driver) ? body.driver : body;
  return str(inner.state) ?? str(inner.status) ?? (isRecord(inner.state) ? str(inner.state.status) : undefined);
}

/**
 * `identities` signs each call as the person making it (sim/identity.ts, the IdP stand-in); without it calls carry
 * no token (an API without authentication, or a test server).
 */
export function createApiClient(baseUrl: string, timeoutMs = 10_000, identities?: IdentityProvider): ApiClient {
  const base = baseUrl.replace(/\/+$/, "");

  async function call(method: string, path: string, as: Actor, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = body === undefined ? {} : { "content-type": "application/json" };
    if (identities) headers.authorization = `Bearer ${await identities.tokenFor(as.role, as.id)}`;
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      throw new ApiError(0, "UNREACHABLE", `${method} ${path}: ${(error as Error).message}`);
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!response.ok) {
      const error = isRecord(json) && isRecord(json.error) ? json.error : {};
      throw new ApiError(
        response.status,
        str(error.code) ?? `HTTP_${response.status}`,
        `${method} ${path}: ${str(error.message) ?? text.slice(0, 200)}`,
      );
    }
    return json;
  }

  const driver = (id: string): Actor => ({ role: "driver", id });
  return {
    placeOrder: async (order) =>
      readOrder(await call("POST", "/orders", { role: "customer", id: order.customer_id }, order)),
    orderEvent: async (orderId, event, actor) => readOrder(await call("POST", `/orders/${orderId}/${event}`, actor)),
    driverState: async (driverId) => readDriverState(await call("GET", `/drivers/${driverId}`, driver(driverId))),
    mqttSignIn: async (driverId) =>
      (await call("POST", `/drivers/${driverId}/mqtt-credentials`, driver(driverId))) as MqttSignIn,
    async mqttSignOff(driverId) {
      await call("DELETE", `/drivers/${driverId}/mqtt-credentials`, driver(driverId));
    },
  };
}
