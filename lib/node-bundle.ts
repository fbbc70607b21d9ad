/**
 * Bundles a TypeScript entry point for Node, for the processes that use the Kafka client (its native addon does not
 * run under Bun: see the README). The bundle goes under the project's git-ignored .stack/node/, so Node finds
 * @confluentinc/kafka-javascript in the project's node_modules; the addon itself stays external.
 */
const NODE_OUT = new URL("../.stack/node/", import.meta.url).pathname;

/**
 * Returns the bundle's path: `.stack/node/<dir>/<content hash>/<entry name>.js`. A directory per content, so processes
 * starting at once write identical files and never run half of another's, and the file keeps its entry's name (the
 * workers recognise themselves by it when run by Node).
 */
export async function bundleForNode(entry: string, dir: string): Promise<string> {
  const result = await Bun.build({
    entrypoints: [entry],
    target: "node",
    outdir: `${NODE_OUT}${dir}`,
    naming: "[hash]/[name].[ext]",
    external: ["@confluentinc/kafka-javascript"],
  });
  const output = result.outputs[0];
  if (!result.success || !output) throw new Error(`bundling ${entry} for Node failed: ${result.logs.join("\n")}`);
  return output.path;
}
