/**
 * The relational schema, the source drizzle-kit generates migrations from. What drizzle cannot express — the
 * partitioned position trail, the session staging table, functions, triggers — lives in custom migrations under
 * db/migrations (see db/schema.sql for the whole database as one file).
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  customType,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  real,
  smallint,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

/** geography(Point, 4326): distances in metres on the spheroid, KNN with `<->` on a GiST index. */
const geographyPoint = customType<{ data: string; driverData: string }>({
  dataType: () => "geography(Point, 4326)",
});

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();

export const driverStatus = pgEnum("driver_status", [
  "offline",
  "available",
  "assigned",
  "at_restaurant",
  "delivering",
  "arriving",
]);

export const orderStatus = pgEnum("order_status", [
  "created",
  "confirmed",
  "assigned",
  "picked_up",
  "delivered",
  "cancelled",
]);

export const customers = pgTable("customers", {
  id: uuid("id").primaryKey().defaultRandom(),
  name: text("name").notNull(),
  location: geographyPoint("location").notNull(),
  createdAt: createdAt(),
});

export const restaurants = pgTable(
  "restaurants",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    name: text("name").notNull(),
    location: geographyPoint("location").notNull(),
    h3: bigint("h3", { mode: "bigint" }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index("restaurants_location_gist").using("gist", t.location)],
);

export const drivers = pgTable("drivers", {
  id: uuid("id").primaryKey().defaultRandom(),
  name: text("name").notNull(),
  vehicle: text("vehicle").notNull().default("scooter"),
  createdAt: createdAt(),
});

/** One hot row per driver, rewritten by every applied batch; kept apart from `drivers` so those updates stay small. */
export const driverState = pgTable(
  "driver_state",
  {
    driverId: uuid("driver_id")
      .primaryKey()
      .references(() => drivers.id, { onDelete: "cascade" }),
    status: driverStatus("status").notNull().default("offline"),
    statusSince: timestamp("status_since", { withTimezone: true }).notNull().defaultNow(),
    position: geographyPoint("position"),
    lat: doublePrecision("lat"),
    lon: doublePrecision("lon"),
    h3: bigint("h3", { mode: "bigint" }),
    speedKmh: real("speed_kmh"),
    headingDeg: real("heading_deg"),
    accuracyM: real("accuracy_m"),
    batteryPct: smallint("battery_pct"),
    /** Device time of the latest applied position; older or equal positions are stale. */
    positionAt: timestamp("position_at", { withTimezone: true }),
    /** When the bridge received that position (freshness = applied time − this). */
    receivedAt: timestamp("received_at", { withTimezone: true }),
    /** Smoothed ground speed (m/s) from recent positions; the ETA divides remaining distance by it. */
    recentSpeedMps: real("recent_speed_mps"),
    currentOrderId: uuid("current_order_id"),
    /**
     * ETA of the current order's remaining leg, refreshed with every applied position. It lives on the driver's row,
     * which the batch rewrites anyway, so a position costs one row update, not two; /track reads it from here.
     */
    etaSeconds: integer("eta_seconds"),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    /** Impossible fixes in a row since the last accepted one (migration 0008: the third re-anchors the driver). */
    implausibleStreak: smallint("implausible_streak").notNull().default(0),
    /** Time of the newest impossible fix counted, so a redelivered batch adds no strike. */
    implausibleAt: timestamp("implausible_at", { withTimezone: true }),
  },
  // Deliberately one small index: an update that changes no indexed value is HOT (no index writes), which is most
  // of the 25K updates/s. Assignment finds candidates by H3 cell, then orders that handful by distance.
  (t) => [index("driver_state_available_h3").on(t.h3).where(sql`status = 'available'`)],
);

export const orders = pgTable(
  "orders",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id),
    restaurantId: uuid("restaurant_id")
      .notNull()
      .references(() => restaurants.id),
    deliveryLocation: geographyPoint("delivery_location").notNull(),
    items: jsonb("items").notNull().default(sql`'[]'::jsonb`),
    status: orderStatus("status").notNull().default("created"),
    driverId: uuid("driver_id").references(() => drivers.id),
    etaSeconds: integer("eta_seconds"),
    etaUpdatedAt: timestamp("eta_updated_at", { withTimezone: true }),
    createdAt: createdAt(),
    confirmedAt: timestamp("confirmed_at", { withTimezone: true }),
    assignedAt: timestamp("assigned_at", { withTimezone: true }),
    pickedUpAt: timestamp("picked_up_at", { withTimezone: true }),
    deliveredAt: timestamp("delivered_at", { withTimezone: true }),
    cancelledAt: timestamp("cancelled_at", { withTimezone: true }),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("orders_status").on(t.status),
    // A driver carries at most one live order: the database refuses a second, whatever the application does.
    uniqueIndex("orders_one_active_per_driver")
      .on(t.driverId)
      .where(sql`status in ('assigned', 'picked_up')`),
  ],
);

/** Every state change of a driver or an order, with the event that caused it. */
export const stateHistory = pgTable(
  "state_history",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    entity: text("entity", { enum: ["driver", "order"] }).notNull(),
    entityId: uuid("entity_id").notNull(),
    fromStatus: text("from_status").notNull(),
    toStatus: text("to_status").notNull(),
    event: text("event").notNull(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("state_history_entity").on(t.entityId, t.at)],
);

/** The allowed moves of both machines; functions consult these rows, so a missing row is a refused transition. */
export const driverTransitions = pgTable(
  "driver_transitions",
  {
    fromStatus: driverStatus("from_status").notNull(),
    event: text("event").notNull(),
    toStatus: driverStatus("to_status").notNull(),
  },
  (t) => [primaryKey({ columns: [t.fromStatus, t.event] })],
);

export const orderTransitions = pgTable(
  "order_transitions",
  {
    fromStatus: orderStatus("from_status").notNull(),
    event: text("event").notNull(),
    toStatus: orderStatus("to_status").notNull(),
  },
  (t) => [primaryKey({ columns: [t.fromStatus, t.event] })],
);

/** Tunables of the SQL side, one row; the apply procedure reads them once per batch. */
export const trackingSettings = pgTable("tracking_settings", {
  id: smallint("id").primaryKey().default(1),
  restaurantGeofenceM: real("restaurant_geofence_m").notNull().default(75),
  deliveryGeofenceM: real("delivery_geofence_m").notNull().default(75),
  /** ETA never assumes a driver slower than this (m/s), so a stopped driver does not mean an infinite ETA. */
  etaFloorSpeedMps: real("eta_floor_speed_mps").notNull().default(3),
  /** Straight-line distance × this ≈ road distance. */
  routeDetourFactor: real("route_detour_factor").notNull().default(1.3),
  /** Weight of the newest speed sample in the smoothed speed. */
  speedSmoothing: real("speed_smoothing").notNull().default(0.3),
  offlineAfterS: integer("offline_after_s").notNull().default(60),
  trailRetentionDays: integer("trail_retention_days").notNull().default(7),
  /** Position trust (migration 0008): implied speed limit, the hop below which speed is GPS noise, re-anchoring. */
  maxSpeedMPerS: real("max_speed_m_per_s").notNull().default(70),
  speedNoiseM: real("speed_noise_m").notNull().default(500),
  reanchorAfter: smallint("reanchor_after").notNull().default(3),
  /** How far a fix's own time may be ahead of the bridge's receive time. */
  maxFutureSkewMs: integer("max_future_skew_ms").notNull().default(2000),
  /**
   * Trail compaction, run by pg_cron inside the database (migration 0024): drivers per step (one transaction each),
   * the time a pass that finds fixes is spread over, the Kafka lag (reported by the workers) above which it waits
   * for ingest, and the least time between the starts of two passes.
   */
  trailCompactionDriversPerStep: integer("trail_compaction_drivers_per_step").notNull().default(200),
  trailCompactionSpreadS: integer("trail_compaction_spread_s").notNull().default(2400),
  trailCompactionYieldLag: bigint("trail_compaction_yield_lag", { mode: "number" }).notNull().default(10000),
  trailCompactionEveryS: integer("trail_compaction_every_s").notNull().default(300),
});
