import { Elysia, t } from "elysia";
import { AppError } from "../../../lib/errors.ts";
import type { AuthPlugin } from "../../auth/plugin.ts";
import { requireSelf } from "../../auth/plugin.ts";
import { ErrorModel, errorResponses } from "../../model.ts";
import { type MqttCredentialIssuer, MqttSignIn } from "./credentials.ts";
import { Driver, DriverParams, LocationAccepted, LocationBody } from "./model.ts";
import { type DriversDeps, driversService } from "./service.ts";

export interface DriversModuleDeps extends DriversDeps {
  auth: AuthPlugin;
  /** MQTT sign-in; without it the sign-in routes answer 503. */
  mqttCredentials?: MqttCredentialIssuer;
  /** The broker URL handed to phones with their credentials. */
  mqttUrl: string;
}

const guarded = { ...errorResponses, 401: ErrorModel, 403: ErrorModel };

/** The broker's address without the user in it: the API's own MQTT_URL may carry its admin's credentials. */
function phoneFacing(mqttUrl: string): string {
  const url = new URL(mqttUrl);
  url.username = "";
  url.password = "";
  return url.toString().replace(/\/$/, "");
}

export function driversModule(deps: DriversModuleDeps) {
  const drivers = driversService(deps);
  const mqttUrl = phoneFacing(deps.mqttUrl);

  const issuer = (): MqttCredentialIssuer => {
    if (!deps.mqttCredentials) throw new AppError("UPSTREAM_UNAVAILABLE", "MQTT sign-in is not configured");
    return deps.mqttCredentials;
  };
  const mustExist = async (driverId: string) => {
    if (!(await drivers.find(driverId))) throw new AppError("NOT_FOUND", `driver ${driverId} does not exist`);
  };

  return new Elysia({ prefix: "/drivers" })
    .use(deps.auth)
    .get(
      "/:driver_id",
      async ({ params, principal }) => {
        requireSelf(principal, params.driver_id, "driver record", { operations: true });
        const driver = await drivers.find(params.driver_id);
        if (!driver) throw new AppError("NOT_FOUND", `driver ${params.driver_id} does not exist`);
        return driver;
      },
      {
        auth: ["driver", "operations"],
        params: DriverParams,
        response: { 200: Driver, ...guarded },
        detail: { tags: ["drivers"], summary: "A driver's state and latest position (the driver itself, operations)" },
      },
    )
    .patch(
      "/:driver_id/location",
      // The raw text goes to the bridge's decoder, so HTTP and MQTT accept and reject exactly the same payloads.
      async ({ params, body, status, principal }) => {
        requireSelf(principal, params.driver_id, "location", { operations: false });
        return status(202, await drivers.reportLocation(params.driver_id, typeof body === "string" ? body : ""));
      },
      {
        auth: ["driver"],
        parse: "text",
        params: DriverParams,
        response: { 202: LocationAccepted, ...guarded },
        detail: {
          tags: ["drivers"],
          summary: "Report positions over HTTP (fallback of MQTT drivers/{id}/location; the driver itself)",
          description:
            "Body: the MQTT v1 payload, one position or an array of them. 202 once Kafka has the record; " +
            "positions that fail a check are listed by index; 400 INVALID_POSITION when none is valid.",
          requestBody: {
            required: true,
            content: { "application/json": { schema: LocationBody as unknown as Record<string, unknown> } },
          },
        },
      },
    )
    .post(
      "/:driver_id/mqtt-credentials",
      async ({ params, principal }) => {
        requireSelf(principal, params.driver_id, "MQTT credentials", { operations: false });
        await mustExist(params.driver_id);
        const credentials = await issuer().issue(params.driver_id.toLowerCase());
        return { ...credentials, mqtt_url: mqttUrl };
      },
      {
        auth: ["driver"],
        params: DriverParams,
        response: { 200: MqttSignIn, ...guarded },
        detail: {
          tags: ["drivers"],
          summary: "MQTT sign-in: credentials that publish only under drivers/{id}/ (the driver itself)",
        },
      },
    )
    .delete(
      "/:driver_id/mqtt-credentials",
      async ({ params, principal, status }) => {
        requireSelf(principal, params.driver_id, "MQTT credentials", { operations: true });
        await mustExist(params.driver_id);
        await issuer().revoke(params.driver_id.toLowerCase());
        return status(204, undefined);
      },
      {
        auth: ["driver", "operations"],
        params: DriverParams,
        response: { 204: t.Undefined(), ...guarded },
        detail: { tags: ["drivers"], summary: "Revoke the driver's MQTT credentials (the driver itself, operations)" },
      },
    );
}
