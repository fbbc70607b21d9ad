import { Elysia } from "elysia";
import { AppError } from "../../../lib/errors.ts";
import { errorResponses } from "../../model.ts";
import { Driver, DriverParams, LocationAccepted, LocationBody } from "./model.ts";
import { type DriversDeps, driversService } from "./service.ts";

export function driversModule(deps: DriversDeps) {
  const drivers = driversService(deps);

  return new Elysia({ prefix: "/drivers" })
    .get(
      "/:driver_id",
      async ({ params }) => {
        const driver = await drivers.find(params.driver_id);
        if (!driver) throw new AppError("NOT_FOUND", `driver ${params.driver_id} does not exist`);
        return driver;
      },
      {
        params: DriverParams,
        response: { 200: Driver, ...errorResponses },
        detail: { tags: ["drivers"], summary: "A driver's state and latest position" },
      },
    )
    .patch(
      "/:driver_id/location",
      // The raw text goes to the bridge's decoder, so HTTP and MQTT accept and reject exactly the same payloads.
      async ({ params, body, status }) =>
        status(202, await drivers.reportLocation(params.driver_id, typeof body === "string" ? body : "")),
      {
        parse: "text",
        params: DriverParams,
        response: { 202: LocationAccepted, ...errorResponses },
        detail: {
          tags: ["drivers"],
          summary: "Report positions over HTTP (fallback of MQTT drivers/{id}/location)",
          description:
            "Body: the MQTT v1 payload, one position or an array of them. 202 once Kafka has the record; " +
            "positions that fail a check are listed by index; 400 INVALID_POSITION when none is valid.",
          requestBody: {
            required: true,
            content: { "application/json": { schema: LocationBody as unknown as Record<string, unknown> } },
          },
        },
      },
    );
}
