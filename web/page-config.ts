/** What the server writes into each page (api/modules/ops/pages.ts): the base map and the city to outline. */
export interface PageConfig {
  /** Tile URL template; "" when there is no base map (no internet): a plain background with the city outline. */
  tileUrl: string;
  city: {
    name: string;
    bbox: { south: number; west: number; north: number; east: number };
    /** [lon, lat] vertices. */
    outline: [number, number][];
  };
}

export function readPageConfig(): PageConfig {
  const element = document.getElementById("page-config");
  if (!element?.textContent) throw new Error("the page has no #page-config");
  return JSON.parse(element.textContent) as PageConfig;
}

/** `#a=1&b=2` as a map; the fragment never reaches the server (nor its logs). */
export function fragmentParams(): URLSearchParams {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}
