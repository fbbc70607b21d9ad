/**
 * bench:device's bar chart, drawn from a results JSON (bench/support/plot.ts). `bun bench/device/plot.ts FILE.json`
 * redraws FILE.svg from a finished run.
 */
import { writePlot } from "../support/plot.ts";

const SHORT: Record<string, string> = { a: "(a) HTTPS new conn.", b: "(b) HTTPS keep-alive", c: "(c) MQTT JSON", d: "(d) adaptive MQTT" };
const FIGURES = {
  bytesPerHour: "KiB per hour",
  wakeUpsPerHour: "wake-ups per hour",
  radioOnSecondsPerHour: "radio on, s per hour",
  energyJPerHour: "radio energy, J per hour",
} as const;

interface Results {
  parameters: { runs: number; scale: number; modes: string[] };
  summary: Record<string, Record<string, { median: number }>>;
}

export async function plotDeviceResults(results: Results, svgFile: string): Promise<string> {
  const rows = results.parameters.modes.flatMap((mode) =>
    Object.entries(FIGURES).map(([figure, title]) => ({
      mode: SHORT[mode] ?? mode,
      figure: title,
      value: results.summary[mode]![figure]!.median / (figure === "bytesPerHour" ? 1024 : 1),
    })),
  );
  return writePlot(svgFile, {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: `bench:device: one phone, one hour (median of ${results.parameters.runs} runs, ${results.parameters.scale}x time)`,
    data: { values: rows },
    facet: { column: { field: "figure", type: "nominal", title: null } },
    spec: {
      width: 150,
      height: 220,
      mark: "bar",
      encoding: {
        x: { field: "mode", type: "nominal", title: null, axis: { labelAngle: -40 } },
        y: { field: "value", type: "quantitative", title: null },
        color: { field: "mode", type: "nominal", legend: null },
      },
    },
    resolve: { scale: { y: "independent" } },
  });
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file?.endsWith(".json")) throw new Error("usage: bun bench/device/plot.ts bench/results/device-<iso>.json");
  console.log(await plotDeviceResults(await Bun.file(file).json(), file.replace(/\.json$/, ".svg")));
}
