/**
 * Plots for benchmarks, drawn from the results by a library (Vega-Lite compiled to Vega, rendered headlessly to SVG:
 * no browser, no canvas). A benchmark builds a Vega-Lite spec from its JSON and writes the SVG beside it.
 */
import * as vega from "vega";
import * as vegaLite from "vega-lite";
import type { TopLevelSpec } from "vega-lite";

export type PlotSpec = TopLevelSpec;

/** The SVG text of a Vega-Lite spec. */
export async function renderSvg(spec: PlotSpec): Promise<string> {
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders the spec and writes it to `file` (an .svg path); returns the path. */
export async function writePlot(file: string, spec: PlotSpec): Promise<string> {
  await Bun.write(file, await renderSvg(spec));
  return file;
}

/** `bench/results/<name>-<iso time>` without extension, the same stem for a run's JSON and its plots. */
export function resultStem(name: string, at = new Date()): string {
  return `bench/results/${name}-${at.toISOString().replace(/[:.]/g, "-")}`;
}
