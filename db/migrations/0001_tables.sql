CREATE TYPE "public"."driver_status" AS ENUM('offline', 'available', 'assigned', 'at_restaurant', 'delivering', 'arriving');--> statement-breakpoint
CREATE TYPE "public"."order_status" AS ENUM('created', 'confirmed', 'assigned', 'picked_up', 'delivered', 'cancelled');--> statement-breakpoint
CREATE TABLE "customers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"location" geography(Point, 4326) NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "driver_state" (
	"driver_id" uuid PRIMARY KEY NOT NULL,
	"status" "driver_status" DEFAULT 'offline' NOT NULL,
	"status_since" timestamp with time zone DEFAULT now() NOT NULL,
	"position" geography(Point, 4326),
	"lat" double precision,
	"lon" double precision,
	"h3" bigint,
	"speed_kmh" real,
	"heading_deg" real,
	"accuracy_m" real,
	"battery_pct" smallint,
	"position_at" timestamp with time zone,
	"received_at" timestamp with time zone,
	"recent_speed_mps" real,
	"current_order_id" uuid,
	"eta_seconds" integer,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "driver_transitions" (
	"from_status" "driver_status" NOT NULL,
	"event" text NOT NULL,
	"to_status" "driver_status" NOT NULL,
	CONSTRAINT "driver_transitions_from_status_event_pk" PRIMARY KEY("from_status","event")
);
--> statement-breakpoint
CREATE TABLE "drivers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"vehicle" text DEFAULT 'scooter' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "order_transitions" (
	"from_status" "order_status" NOT NULL,
	"event" text NOT NULL,
	"to_status" "order_status" NOT NULL,
	CONSTRAINT "order_transitions_from_status_event_pk" PRIMARY KEY("from_status","event")
);
--> statement-breakpoint
CREATE TABLE "orders" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"restaurant_id" uuid NOT NULL,
	"delivery_location" geography(Point, 4326) NOT NULL,
	"items" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"status" "order_status" DEFAULT 'created' NOT NULL,
	"driver_id" uuid,
	"eta_seconds" integer,
	"eta_updated_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"confirmed_at" timestamp with time zone,
	"assigned_at" timestamp with time zone,
	"picked_up_at" timestamp with time zone,
	"delivered_at" timestamp with time zone,
	"cancelled_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "restaurants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"location" geography(Point, 4326) NOT NULL,
	"h3" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "state_history" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "state_history_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"entity" text NOT NULL,
	"entity_id" uuid NOT NULL,
	"from_status" text NOT NULL,
	"to_status" text NOT NULL,
	"event" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tracking_settings" (
	"id" smallint PRIMARY KEY DEFAULT 1 NOT NULL,
	"restaurant_geofence_m" real DEFAULT 75 NOT NULL,
	"delivery_geofence_m" real DEFAULT 75 NOT NULL,
	"eta_floor_speed_mps" real DEFAULT 3 NOT NULL,
	"route_detour_factor" real DEFAULT 1.3 NOT NULL,
	"speed_smoothing" real DEFAULT 0.3 NOT NULL,
	"offline_after_s" integer DEFAULT 60 NOT NULL,
	"trail_retention_days" integer DEFAULT 7 NOT NULL
);
--> statement-breakpoint
ALTER TABLE "driver_state" ADD CONSTRAINT "driver_state_driver_id_drivers_id_fk" FOREIGN KEY ("driver_id") REFERENCES "public"."drivers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_restaurant_id_restaurants_id_fk" FOREIGN KEY ("restaurant_id") REFERENCES "public"."restaurants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_driver_id_drivers_id_fk" FOREIGN KEY ("driver_id") REFERENCES "public"."drivers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "driver_state_available_h3" ON "driver_state" USING btree ("h3") WHERE status = 'available';--> statement-breakpoint
CREATE INDEX "orders_status" ON "orders" USING btree ("status");--> statement-breakpoint
CREATE UNIQUE INDEX "orders_one_active_per_driver" ON "orders" USING btree ("driver_id") WHERE status in ('assigned', 'picked_up');--> statement-breakpoint
CREATE INDEX "restaurants_location_gist" ON "restaurants" USING gist ("location");--> statement-breakpoint
CREATE INDEX "state_history_entity" ON "state_history" USING btree ("entity_id","at");