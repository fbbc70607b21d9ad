/**
 * The two pages and their scripts, public static assets (every data route they call has its own rule): the HTML
 * from web/, with the map's settings written in, and web/*.ts bundled by Bun's bundler on first request (Leaflet,
 * h3-js and the CSS from node_modules, no CDN), kept in memory for the process's life.
 */
import { Elysia, t } from "elysia";
import { CITIES } from "../../../lib/cities.ts";
import { AppError } from "../../../lib/errors.ts";
import type { AuthPlugin } from "../../auth/plugin.ts";

const WEB = new URL("../../../web/", import.meta.url).pathname;
const PAGES = ["ops", "track"] as const;
type Page = (typeof PAGES)[number];

export interface PagesConfig {
  /** MAP_TILE_URL: "" for none. */
  tileUrl: string;
  /** MAP_CITY: which city the maps open on and outline. */
  city: string;
}

interface Asset {
  body: Uint8Array;
  type: string;
}

async function bundle(): Promise<Map<string, Asset>> {
  const result = await Bun.build({
    entrypoints: [...PAGES.map((page) => `${WEB}${page}.ts`), `${WEB}pages.css`],
    target: "browser",
    minify: true,
    naming: "[name].[ext]",
  });
  if (!result.success) throw new AppError("INTERNAL", `bundling the pages failed: ${result.logs.join("\n")}`);
  const assets = new Map<string, Asset>();
  for (const output of result.outputs) {
    const name = output.path.split("/").pop()!;
    assets.set(name, { body: new Uint8Array(await output.arrayBuffer()), type: output.type });
  }
  return assets;
}

/** A JSON text safe inside a <script> element: no "</script>" can close it early. */
const scriptSafeJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c");

export function pagesModule(deps: { auth: AuthPlugin; config: PagesConfig }) {
  let assets: Promise<Map<string, Asset>> | undefined;
  const city = CITIES[deps.config.city];
  if (!city) throw new AppError("CONFIG_INVALID", `MAP_CITY: no city "${deps.config.city}"`);
  const pageConfig = scriptSafeJson({ tileUrl: deps.config.tileUrl, city });
  // The tile server's origin, a {s} subdomain as a wildcard: the only place images may come from besides this API.
  const tileSource = /^https?:\/\/[^/]+/.exec(deps.config.tileUrl)?.[0]?.replace("{s}", "*") ?? "";
  const security = {
    "content-security-policy":
      `default-src 'self'; img-src 'self' data: ${tileSource}; style-src 'self' 'unsafe-inline'; object-src 'none'; ` +
      "base-uri 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
  };
  const html = new Map<Page, Promise<string>>();
  const pageHtml = (page: Page) => {
    let text = html.get(page);
    if (!text) {
      text = Bun.file(`${WEB}${page}.html`)
        .text()
        .then((source) => source.replace("<!--PAGE_CONFIG-->", `<script id="page-config" type="application/json">${pageConfig}</script>`));
      html.set(page, text);
    }
    return text;
  };
  const servePage = async (page: Page) =>
    new Response(await pageHtml(page), { headers: { "content-type": "text/html; charset=utf-8", ...security } });

  return new Elysia({ prefix: "/ui" })
    .use(deps.auth)
    .get("/ops", () => servePage("ops"), {
      open: true,
      detail: { tags: ["pages"], summary: "Operations map (the token goes in the fragment: #token=…)" },
    })
    .get("/track", () => servePage("track"), {
      open: true,
      detail: { tags: ["pages"], summary: "Customer tracking page (#order=…&token=<tracking link token>)" },
    })
    .get(
      "/assets/:file",
      async ({ params }) => {
        // A failed build is not kept: the next request tries again.
        assets ??= bundle().catch((error) => {
          assets = undefined;
          throw error;
        });
        const asset = (await assets).get(params.file);
        if (!asset) throw new AppError("NOT_FOUND", `no asset ${params.file}`);
        return new Response(asset.body, {
          headers: { "content-type": asset.type, "cache-control": "public, max-age=300", "x-content-type-options": "nosniff" },
        });
      },
      {
        open: true,
        params: t.Object({ file: t.String({ pattern: "^[\\w.-]{1,100}$" }) }),
        detail: { tags: ["pages"], summary: "The pages' bundled scripts and styles" },
      },
    );
}
