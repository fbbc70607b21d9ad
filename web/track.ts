/**
 * The customer's page for one order, opened from its tracking link: `/ui/track#order=<id>&token=<tracking token>`
 * (the token POST /orders answers with, in the fragment so it never reaches a server log). It reads GET /track once,
 * then follows the live stream: the driver's dot moves on `position`, the steps and ETA follow `track`, and `end`
 * closes it. The ETA counts down between updates.
 */
import L from "leaflet";
import { createBaseMap } from "./base-map.ts";
import { fragmentParams, readPageConfig } from "./page-config.ts";

const STEPS = ["created", "confirmed", "assigned", "picked_up", "delivered"] as const;
const STEP_LABELS: Record<string, string> = {
  created: "Order placed",
  confirmed: "Restaurant confirmed",
  assigned: "Driver on the way to the restaurant",
  picked_up: "Picked up, on the way to you",
  delivered: "Delivered",
};
const RETRY_STREAM_MS = 10_000;

interface Track {
  order_id: string;
  status: string;
  restaurant: { id: string; name: string; lat: number; lon: number };
  delivery: { lat: number; lon: number };
  driver: { id: string; name: string; lat: number | null; lon: number | null; state: string } | null;
  eta_seconds: number | null;
}
interface PositionUpdate {
  status: string;
  driver_state: string;
  lat: number;
  lon: number;
  at: string;
  eta_seconds: number | null;
}

const $ = (id: string) => document.getElementById(id)!;

function main() {
  const params = fragmentParams();
  const orderId = params.get("order");
  const token = params.get("token");
  const map = createBaseMap($("map"), readPageConfig());
  if (!orderId || !token) {
    $("error").textContent = "Open this page from your order's tracking link.";
    return;
  }
  const query = `?token=${encodeURIComponent(token)}`;

  let restaurant: L.CircleMarker | undefined;
  let home: L.CircleMarker | undefined;
  let driver: L.CircleMarker | undefined;
  let route: L.Polyline | undefined;
  let status = "";
  let etaDeadline: number | null = null;
  let fitted = false;

  const renderEta = () => {
    const el = $("eta");
    if (etaDeadline === null || status === "delivered" || status === "cancelled") {
      el.textContent = status === "delivered" ? "Delivered" : "–";
      el.dataset.seconds = "";
      return;
    }
    const seconds = Math.max(0, Math.round((etaDeadline - Date.now()) / 1000));
    el.dataset.seconds = String(seconds);
    el.textContent = `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
  };
  setInterval(renderEta, 1_000);
  const setEta = (seconds: number | null) => {
    etaDeadline = seconds === null ? null : Date.now() + seconds * 1000;
    renderEta();
  };

  const renderStatus = (next: string) => {
    status = next;
    const reached = STEPS.indexOf(next as (typeof STEPS)[number]);
    $("steps").innerHTML = STEPS.map((step, i) => {
      const cls = next === "cancelled" ? "" : i < reached || next === "delivered" ? "done" : i === reached ? "current" : "";
      return `<li class="${cls}" data-step="${step}">${STEP_LABELS[step]}</li>`;
    }).join("");
    $("status").dataset.status = next;
    $("status").textContent = next === "cancelled" ? "This order was cancelled." : `Status: ${next.replace("_", " ")}`;
    renderEta();
  };

  const moveDriver = (lat: number, lon: number) => {
    if (!driver) driver = L.circleMarker([lat, lon], { radius: 8, color: "#fff", weight: 2, fillColor: "#2e7d32", fillOpacity: 1 }).addTo(map);
    else driver.setLatLng([lat, lon]);
    const el = $("driver");
    el.dataset.lat = String(lat);
    el.dataset.lon = String(lon);
    el.textContent = `Driver at ${lat.toFixed(5)}, ${lon.toFixed(5)}`;
    // The leg the driver is on: to the restaurant until pick-up, then to the customer.
    const target = status === "picked_up" ? home : restaurant;
    if (target) {
      const points: L.LatLngExpression[] = [[lat, lon], target.getLatLng()];
      if (!route) route = L.polyline(points, { color: "#2e7d32", weight: 3, dashArray: "6 6" }).addTo(map);
      else route.setLatLngs(points);
    }
  };

  const applyTrack = (track: Track) => {
    restaurant ??= L.circleMarker([track.restaurant.lat, track.restaurant.lon], {
      radius: 9,
      color: "#fff",
      weight: 2,
      fillColor: "#ef6c00",
      fillOpacity: 1,
    })
      .bindTooltip(track.restaurant.name)
      .addTo(map);
    home ??= L.circleMarker([track.delivery.lat, track.delivery.lon], {
      radius: 9,
      color: "#fff",
      weight: 2,
      fillColor: "#1565c0",
      fillOpacity: 1,
    })
      .bindTooltip("You")
      .addTo(map);
    $("restaurant").textContent = track.restaurant.name;
    renderStatus(track.status);
    setEta(track.eta_seconds);
    if (track.driver?.lat != null && track.driver.lon != null) moveDriver(track.driver.lat, track.driver.lon);
    else if (!track.driver) {
      driver?.remove();
      route?.remove();
      driver = route = undefined;
    }
    if (!fitted) {
      fitted = true;
      const bounds = L.latLngBounds([restaurant.getLatLng(), home.getLatLng()]);
      if (driver) bounds.extend(driver.getLatLng());
      map.fitBounds(bounds, { padding: [60, 60], maxZoom: 16 });
    }
  };

  const readOnce = async () => {
    const res = await fetch(`/track/${orderId}${query}`);
    if (!res.ok) {
      $("error").textContent = res.status === 401 ? "This tracking link has expired." : `Tracking is unavailable (${res.status}).`;
      return false;
    }
    applyTrack((await res.json()) as Track);
    return true;
  };

  const openStream = () => {
    const stream = new EventSource(`/track/${orderId}/live${query}`);
    stream.addEventListener("track", (event) => applyTrack(JSON.parse((event as MessageEvent).data) as Track));
    stream.addEventListener("position", (event) => {
      const update = JSON.parse((event as MessageEvent).data) as PositionUpdate;
      if (update.status !== status) renderStatus(update.status);
      setEta(update.eta_seconds);
      moveDriver(update.lat, update.lon);
    });
    stream.addEventListener("end", () => stream.close());
    stream.onerror = () => {
      // A refused stream (503 at the server's ceiling, 401) is not retried by the browser: read, then try again.
      if (stream.readyState !== EventSource.CLOSED || status === "delivered" || status === "cancelled") return;
      setTimeout(() => void readOnce().then((ok) => ok && openStream()), RETRY_STREAM_MS);
    };
  };

  void readOnce().then((ok) => ok && openStream());
}

main();
