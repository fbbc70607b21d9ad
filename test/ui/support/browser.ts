/**
 * Debian's Chromium (apt `chromium`, bin/stack installs it) driven by playwright-core: never a downloaded browser.
 * Screenshots go to test-artifacts/ui/ (git-ignored).
 */
import { mkdirSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = new URL("../../../test-artifacts/ui/", import.meta.url).pathname;

export async function launchChromium(): Promise<Browser> {
  // Playwright passes --no-sandbox itself (chromiumSandbox defaults to false): the tests run as root here.
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

export async function newPage(browser: Browser, viewport = { width: 1280, height: 800 }): Promise<Page> {
  const page = await browser.newPage({ viewport });
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} ${response.url().replace(/token=[^&#]+/, "token=…")}`);
  });
  Object.assign(page, { problems });
  return page;
}

/** Errors the page's scripts raised so far (uncaught exceptions, console.error). */
export const pageProblems = (page: Page): string[] => (page as Page & { problems: string[] }).problems;

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}${name}.png`;
  await page.screenshot({ path });
  return path;
}
