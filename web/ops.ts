/**
 * The operations page: drivers in the viewport (a dot each, or counts per H3 cell when there are too many),
 * the density of available drivers per H3 cell, orders by status and the pipeline's health, refreshed every second.
 * The operations token comes in the URL fragment (`#token=`, never sent to the server), is kept for the tab's
 * session, and goes out as a bearer header.
 */
import { cellToBoundary, cellToLatLng } from "h3-js";
import { createBaseMap } from "./base-map.ts";
import { createCanvasLayer } from "./canvas-layer.ts";
import { fragmentParams, readPageConfig } from "./page-config.ts";

const REFRESH_MS = 1_000;
/** The busiest cell's pie, in pixels; the others' areas are proportional to their drivers. */
const PIE_MAX_RADIUS = 13;
const STATE_COLOURS: Record<string, string> = {
  offline: "#9aa5b1",
  available: "#2e7d32",
  assigned: "#1565c0",
  at_restaurant: "#ef6c00",
  delivering: "#6a1b9a",
  arriving: "#c2185b",
};
const ORDER_STATUSES = ["created", "confirmed", "assigned", "picked_up", "delivered", "cancelled"];

interface OpsMap {
  states: string[];
  drivers_in_view: number;
  drivers: { kind: "dots"; points: number[] } | { kind: "cells"; resolution: number; cells: (string | number)[] };
  density: { resolution: number; cells: (string | number)[] };
}
interface Summary {
  orders: Record<string, number>;
  pipeline: {
    sources: { url: string; up: boolean; error?: string }[];
    positions_applied_total: number;
    positions_per_second: number | null;
    consumer_lag_messages: number;
    freshness_p99_seconds: number | null;
    dlq_by_reason: { reason: string; total: number; per_second: number | null }[];
  };
}

/** What tests and measurements read back (window.opsStats). */
const stats = {
  mapUpdates: 0,
  summaryUpdates: 0,
  bytes: 0,
  lastDrawMs: 0,
  /** Overlay redraw times (ms), the last 100: what one update costs the main thread. */
  drawMs: [] as number[],
  draws: 0,
  lastMap: undefined as OpsMap | undefined,
};
Object.assign(window, { opsStats: stats });

function takeToken(): string | null {
  const params = fragmentParams();
  const fromFragment = params.get("token");
  if (fromFragment) {
    sessionStorage.setItem("opsToken", fromFragment);
    params.delete("token");
    // Out of the address bar, screenshots and history; the rest of the fragment (view=) stays.
    history.replaceState(null, "", `${location.pathname}${params.size > 0 ? `#${params}` : ""}`);
  }
  return sessionStorage.getItem("opsToken");
}

/** `view=lat,lon,zoom` in the fragment opens the map there instead of on the whole city. */
function requestedView(): { lat: number; lon: number; zoom: number } | undefined {
  const parts = fragmentParams().get("view")?.split(",").map(Number);
  if (!parts || parts.length !== 3 || parts.some((n) => !Number.isFinite(n))) return undefined;
  return { lat: parts[0]!, lon: parts[1]!, zoom: parts[2]! };
}

const $ = (id: string) => document.getElementById(id)!;
/** Text from the server into markup: labels come from the workers' metrics, so they are escaped like any input. */
const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const fmt = (n: number | null, digits = 0) =>
  n === null ? "–" : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

function askForToken(message: string) {
  $("auth").innerHTML =
    `<p class="down">${message}</p><form class="token"><label>Operations token<br><input name="token" ` +
    `autocomplete="off"></label> <button>Use</button></form><p class="muted">bun run token -- --role operations ` +
    `--sub you</p>`;
  $("auth").querySelector("form")!.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = new FormData(event.target as HTMLFormElement).get("token");
    if (typeof value === "string" && value.trim()) {
      sessionStorage.setItem("opsToken", value.trim());
      location.reload();
    }
  });
}

async function getJson<T>(path: string, token: string): Promise<T | undefined> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  stats.bytes += text.length;
  if (res.status === 401 || res.status === 403) {
    askForToken(res.status === 401 ? "The token is missing, expired or not valid." : "This token is not an operations token.");
    return undefined;
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return JSON.parse(text) as T;
}

function renderSummary(summary: Summary) {
  const p = summary.pipeline;
  const metric = (name: string, label: string, value: number | null, shown: string) =>
    `<tr><td>${label}</td><td class="num" data-metric="${name}" data-value="${value ?? ""}">${shown}</td></tr>`;
  $("health").innerHTML =
    metric("positions_per_second", "positions/s", p.positions_per_second, fmt(p.positions_per_second)) +
    metric("positions_applied_total", "applied (total)", p.positions_applied_total, fmt(p.positions_applied_total)) +
    metric("consumer_lag_messages", "consumer lag", p.consumer_lag_messages, fmt(p.consumer_lag_messages)) +
    metric(
      "freshness_p99_seconds",
      "freshness p99",
      p.freshness_p99_seconds,
      p.freshness_p99_seconds === null ? "–" : `${fmt(p.freshness_p99_seconds, 2)} s`,
    );
  $("dlq").innerHTML =
    p.dlq_by_reason.length === 0
      ? `<tr><td class="muted">none</td></tr>`
      : p.dlq_by_reason
          .map(
            (r) =>
              `<tr data-reason="${escape(r.reason)}" data-total="${r.total}"><td>${escape(r.reason)}</td>` +
              `<td class="num">${fmt(r.per_second, 1)}/s</td><td class="num">${fmt(r.total)}</td></tr>`,
          )
          .join("");
  $("sources").innerHTML = p.sources
    .map((s) => `<div class="${s.up ? "muted" : "down"}">${s.up ? "up" : "down"}: ${escape(new URL(s.url).host)}</div>`)
    .join("");
  $("orders").innerHTML = ORDER_STATUSES.map(
    (status) =>
      `<tr><td>${status}</td><td class="num" data-order-status="${status}">${fmt(summary.orders[status] ?? 0)}</td></tr>`,
  ).join("");
}

function main() {
  const cfg = readPageConfig();
  const map = createBaseMap($("map"), cfg);
  const view = requestedView();
  if (view) map.setView([view.lat, view.lon], view.zoom);
  const boundaries = new Map<string, [number, number][]>();
  const boundary = (cell: string) => {
    let ring = boundaries.get(cell);
    if (!ring) boundaries.set(cell, (ring = cellToBoundary(cell)));
    return ring;
  };

  const centres = new Map<string, [number, number]>();
  const centre = (cell: string) => {
    let point = centres.get(cell);
    if (!point) centres.set(cell, (point = cellToLatLng(cell)));
    return point;
  };

  const layer = createCanvasLayer(map, (ctx, project) => {
    const data = stats.lastMap;
    if (!data) return;
    const started = performance.now();
    const density = data.density.cells;
    let densest = 1;
    for (let i = 1; i < density.length; i += 2) densest = Math.max(densest, density[i] as number);
    for (let i = 0; i < density.length; i += 2) {
      const ring = boundary(density[i] as string);
      ctx.beginPath();
      ring.forEach(([lat, lon], k) => {
        const { x, y } = project(lat, lon);
        if (k === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.closePath();
      ctx.fillStyle = `rgba(46, 125, 50, ${(0.08 + 0.45 * ((density[i + 1] as number) / densest)).toFixed(3)})`;
      ctx.fill();
    }
    const drivers = data.drivers;
    if (drivers.kind === "dots") {
      const byState: number[][] = data.states.map(() => []);
      for (let i = 0; i < drivers.points.length; i += 3) byState[drivers.points[i + 2]!]?.push(i);
      byState.forEach((indices, state) => {
        ctx.fillStyle = STATE_COLOURS[data.states[state]!] ?? "#000";
        ctx.beginPath();
        for (const i of indices) {
          const { x, y } = project(drivers.points[i]!, drivers.points[i + 1]!);
          ctx.moveTo(x + 3, y);
          ctx.arc(x, y, 3, 0, 2 * Math.PI);
        }
        ctx.fill();
      });
    } else {
      // Counts per cell and state: a pie per cell, its area proportional to the drivers there, a wedge per state.
      const cells = drivers.cells;
      const byCell = new Map<string, number[]>();
      for (let i = 0; i < cells.length; i += 3) {
        let counts = byCell.get(cells[i] as string);
        if (!counts) byCell.set(cells[i] as string, (counts = data.states.map(() => 0)));
        counts[cells[i + 1] as number] = cells[i + 2] as number;
      }
      let busiest = 1;
      for (const counts of byCell.values()) busiest = Math.max(busiest, counts.reduce((a, b) => a + b, 0));
      for (const [cell, counts] of byCell) {
        const total = counts.reduce((a, b) => a + b, 0);
        const [lat, lon] = centre(cell);
        const { x, y } = project(lat, lon);
        const radius = Math.max(2.5, PIE_MAX_RADIUS * Math.sqrt(total / busiest));
        let angle = -Math.PI / 2;
        counts.forEach((count, state) => {
          if (count === 0) return;
          const sweep = (2 * Math.PI * count) / total;
          ctx.fillStyle = STATE_COLOURS[data.states[state]!] ?? "#000";
          ctx.beginPath();
          ctx.moveTo(x, y);
          ctx.arc(x, y, radius, angle, angle + sweep);
          ctx.closePath();
          ctx.fill();
          angle += sweep;
        });
      }
    }
    stats.lastDrawMs = performance.now() - started;
    stats.drawMs.push(stats.lastDrawMs);
    if (stats.drawMs.length > 100) stats.drawMs.shift();
    stats.draws++;
  });

  $("legend").innerHTML = Object.entries(STATE_COLOURS)
    .map(([state, colour]) => `<div><span class="swatch" style="background:${colour}"></span>${state}</div>`)
    .join("");

  const token = takeToken();
  if (!token) {
    askForToken("Open this page with #token=<operations token> in the address.");
    return;
  }

  const refreshMap = async () => {
    const b = map.getBounds();
    const query = new URLSearchParams({
      west: b.getWest().toFixed(5),
      south: b.getSouth().toFixed(5),
      east: b.getEast().toFixed(5),
      north: b.getNorth().toFixed(5),
      zoom: String(map.getZoom()),
    });
    const data = await getJson<OpsMap>(`/ops/map?${query}`, token);
    if (!data) return false;
    stats.lastMap = data;
    stats.mapUpdates++;
    $("in-view").textContent = `${fmt(data.drivers_in_view)} drivers in view` + (data.drivers.kind === "cells" ? " (counts per H3 cell)" : "");
    layer.schedule();
    return true;
  };
  const refreshSummary = async () => {
    const summary = await getJson<Summary>("/ops/summary", token);
    if (!summary) return false;
    renderSummary(summary);
    stats.summaryUpdates++;
    return true;
  };

  // One refresh in flight at a time; the next starts a period after the last one began (at once after a pan).
  const loop = (refresh: () => Promise<boolean>) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let running = false;
    let again = false;
    const run = async (): Promise<void> => {
      if (running) {
        again = true;
        return;
      }
      clearTimeout(timer);
      running = true;
      const began = performance.now();
      let goOn = true;
      try {
        goOn = await refresh();
        $("error").textContent = "";
      } catch (error) {
        $("error").textContent = (error as Error).message;
      }
      running = false;
      if (!goOn) return;
      if (again) {
        again = false;
        return run();
      }
      timer = setTimeout(run, Math.max(0, REFRESH_MS - (performance.now() - began)));
    };
    void run();
    return run;
  };
  const mapNow = loop(refreshMap);
  loop(refreshSummary);
  map.on("moveend", () => void mapNow());
}

main();
