/**
 * The mocked mobile app's view of the HTTP API (DESIGN.md, HTTP). It reads answers leniently — the order at the top
 * level or under `order`, the driver as `driver_id` or `driver.id` — because only the documented contract is fixed.
 */
import type { LatLon } from "./cities.ts";
import type { OrderItem } from "./names.ts";

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

export interface ApiClient {
  placeOrder(order: PlaceOrder): Promise<OrderView>;
  orderEvent(orderId: string, event: OrderEvent): Promise<OrderView>;
  /** The driver's state (`available`, `at_restaurant`, …) as GET /drivers/{id} reports it. */
  driverState(driverId: string): Promise<string | undefined>;
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

export function createApiClient(baseUrl: string, timeoutMs = 10_000): ApiClient {
  const base = baseUrl.replace(/\/+$/, "");

  async function call(method: string, path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
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

  return {
    placeOrder: async (order) => readOrder(await call("POST", "/orders", order)),
    orderEvent: async (orderId, event) => readOrder(await call("POST", `/orders/${orderId}/${event}`)),
    driverState: async (driverId) => readDriverState(await call("GET", `/drivers/${driverId}`)),
  };
}
