/**
 * The map both pages draw on: Leaflet with its canvas renderer (no WebGL: headless Chromium draws it as it is), the
 * configured tiles or, without any, a plain background with the city's outline, and a scale.
 */
import L from "leaflet";
import type { PageConfig } from "./page-config.ts";

export function createBaseMap(element: HTMLElement, cfg: PageConfig): L.Map {
  const map = L.map(element, { preferCanvas: true, zoomAnimation: false, fadeAnimation: false, attributionControl: false });
  const { south, west, north, east } = cfg.city.bbox;
  map.fitBounds([
    [south, west],
    [north, east],
  ]);
  if (cfg.tileUrl) {
    L.tileLayer(cfg.tileUrl, { maxZoom: 19 }).addTo(map);
  } else {
    element.classList.add("no-tiles");
    L.polygon(
      cfg.city.outline.map(([lon, lat]) => [lat, lon] as [number, number]),
      { color: "#8a9bb0", weight: 1.5, fillColor: "#f4f1ea", fillOpacity: 1, interactive: false },
    ).addTo(map);
  }
  L.control.scale({ metric: true, imperial: false, position: "bottomleft" }).addTo(map);
  return map;
}
