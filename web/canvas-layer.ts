/**
 * A canvas over the map that a page redraws itself: thousands of dots and hexagons in one pass, without a Leaflet
 * layer object each (which is what keeps a redraw within a frame). Redrawn whenever the map moves or zooms.
 */
import type L from "leaflet";

export type Draw = (ctx: CanvasRenderingContext2D, project: (lat: number, lon: number) => { x: number; y: number }) => void;

export function createCanvasLayer(map: L.Map, draw: Draw) {
  const canvas = document.createElement("canvas");
  canvas.className = "overlay-canvas";
  map.getContainer().appendChild(canvas);
  const ctx = canvas.getContext("2d")!;
  let queued = false;

  const redraw = () => {
    queued = false;
    const size = map.getSize();
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== size.x * ratio || canvas.height !== size.y * ratio) {
      canvas.width = size.x * ratio;
      canvas.height = size.y * ratio;
      canvas.style.width = `${size.x}px`;
      canvas.style.height = `${size.y}px`;
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, size.x, size.y);
    draw(ctx, (lat, lon) => map.latLngToContainerPoint([lat, lon]));
  };
  /** Coalesces redraws into the next animation frame. */
  const schedule = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(redraw);
  };
  map.on("move zoom resize viewreset", schedule);
  schedule();
  return { schedule };
}
