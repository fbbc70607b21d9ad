/**
 * The shareable tracking link POST /orders answers with: a token of role `tracker` whose subject is the one order
 * it may follow, opening only GET /track/{id} and its live stream, expiring AUTH_TRACKING_LINK_TTL after creation.
 * Paths are relative: the app knows which host it talks to.
 */
import { t } from "elysia";
import { Timestamp } from "../model.ts";
import type { TokenService } from "./tokens.ts";

export const TrackingLink = t.Object(
  {
    token: t.String({ description: "Bearer token (role tracker) for this order's tracking only" }),
    url: t.String({ description: "GET /track/{id} with the token in the query" }),
    live_url: t.String({ description: "The live stream (EventSource) with the token in the query" }),
    expires_at: Timestamp,
  },
  { description: "A link the customer may share: it shows this order's tracking and nothing else" },
);
export type TrackingLink = typeof TrackingLink.static;

export async function mintTrackingLink(tokens: TokenService, orderId: string, ttlSeconds: number): Promise<TrackingLink> {
  const { token, expiresAt } = await tokens.mint("tracker", orderId, { ttl: ttlSeconds });
  const query = `?token=${encodeURIComponent(token)}`;
  return {
    token,
    url: `/track/${orderId}${query}`,
    live_url: `/track/${orderId}/live${query}`,
    expires_at: expiresAt.toISOString(),
  };
}
