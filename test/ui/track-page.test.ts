// The customer's tracking page in Debian's Chromium, opened from the order's tracking link: the driver's dot moves
// as positions flow through the real pipeline, the steps and ETA follow the live stream, and it ends at delivered.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { orderParties } from "../api/support/orders.ts";
import { ORIGIN, offset, type Point, seedCustomer, seedDriver, seedRestaurant } from "../api/support/seed.ts";
import { waitFor } from "../api/support/wait.ts";
import { launchChromium, newPage, pageProblems, screenshot } from "./support/browser.ts";
import { type LiveStack, startLiveStack } from "./support/live-stack.ts";

let stack: LiveStack;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  stack = await startLiveStack("ui_track");
  browser = await launchChromium();
  page = await newPage(browser);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

const attribute = (selector: string, name: string) => page.locator(selector).getAttribute(name);
const driverOnPage = async () => ({
  lat: Number(await attribute("#driver", "data-lat")),
  lon: Number(await attribute("#driver", "data-lon")),
});

describe("customer tracking page", () => {
  test("the driver's dot goes to the restaurant, then to the customer, and the page ends at delivered", async () => {
    const { h } = stack;
    const restaurantAt = ORIGIN;
    const home = offset(ORIGIN, 900, 300);
    const customerId = await seedCustomer(h.sql, home);
    const restaurantId = await seedRestaurant(h.sql, restaurantAt);
    const driverStart = offset(ORIGIN, -700, -200);
    const driverId = await seedDriver(h.sql, { at: driverStart, positionAgeSeconds: 10 });
    const orders = orderParties(h);
    const placed = await orders.place({ customerId, restaurantId, delivery: home });
    expect(placed.status).toBe(201);
    const orderId = placed.body.id as string;
    expect((await orders.act(orderId, "confirm")).body.driver?.id).toBe(driverId);

    // The page is opened from the link POST /orders answered with: its token goes in the fragment.
    const link = new URL(placed.body.tracking.url as string, stack.base);
    expect(link.pathname).toBe(`/track/${orderId}`);
    await page.goto(`${stack.base}/ui/track#order=${orderId}&token=${link.searchParams.get("token")}`);
    await waitFor("the assigned order on the page", async () => (await attribute("#status", "data-status")) === "assigned");
    expect(await driverOnPage()).toEqual(driverStart);

    const driveTo = async (to: Point, what: string) => {
      await stack.publish(driverId, to);
      await waitFor(`the driver's dot ${what}`, async () => {
        const at = await driverOnPage();
        return Math.abs(at.lat - to.lat) < 1e-9 && Math.abs(at.lon - to.lon) < 1e-9;
      }, 30_000);
    };
    await driveTo(offset(ORIGIN, -300, -100), "half-way to the restaurant");
    const eta = Number(await attribute("#eta", "data-seconds"));
    expect(eta).toBeGreaterThan(0);
    // Between two positions the ETA counts down on its own.
    await waitFor("the ETA to count down", async () => Number(await attribute("#eta", "data-seconds")) < eta, 5_000);
    await screenshot(page, "track-to-restaurant");

    await driveTo(restaurantAt, "at the restaurant");
    // The pick-up is allowed once the worker applied the geofence (at_restaurant): a condition, polled.
    await waitFor("the pick-up to be accepted", async () => (await orders.act(orderId, "pickup")).status === 200, 30_000);
    await waitFor("picked up on the page", async () => (await attribute("#status", "data-status")) === "picked_up");
    await driveTo(offset(ORIGIN, 450, 150), "half-way to the customer");
    expect(await page.locator('#steps li[data-step="assigned"]').getAttribute("class")).toBe("done");
    expect(await page.locator('#steps li[data-step="picked_up"]').getAttribute("class")).toBe("current");
    await screenshot(page, "track-to-customer");

    await driveTo(home, "at the customer's door");
    await waitFor("the delivery to be accepted", async () => (await orders.act(orderId, "deliver")).status === 200, 30_000);
    await waitFor("delivered on the page", async () => (await attribute("#status", "data-status")) === "delivered");
    expect(await page.locator("#eta").textContent()).toBe("Delivered");
    expect(await page.locator('#steps li[data-step="delivered"]').getAttribute("class")).toBe("done");
    await screenshot(page, "track-delivered");
    expect(pageProblems(page)).toEqual([]);
  }, 120_000);

  test("a link without a token shows a message instead of the order", async () => {
    const other = await newPage(browser);
    await other.goto(`${stack.base}/ui/track`);
    expect(await other.locator("#error").textContent()).toContain("tracking link");
    await other.close();
  }, 30_000);
});
