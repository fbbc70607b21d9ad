/**
 * `bun bench/device/encoding-sizes.ts`: payload bytes per fix of the three forms (phone/encoding.ts) over the recorded
 * route, one fix per message (live) and batches of 7 (idle, standing: a message every 28 s), plus each form's topic.
 * Deterministic (the route is a file), so one run is the measurement. docs/phone.md quotes the table.
 */
import { encodeFixes, payloadBytes, positionTopicFor, PAYLOAD_FORMS } from "../../phone/encoding.ts";
import { loadRoute } from "./route.ts";

const route = await loadRoute();
const base = 1_764_460_000;
const fixes = route.map((f) => ({ lat: f.lat, lon: f.lon, tst: base + f.t, acc: f.acc, vel: f.vel, cog: f.cog, batt: f.batt }));
const driver = "3f2c1d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";

const perFix = (form: (typeof PAYLOAD_FORMS)[number], batch: number) => {
  let bytes = 0;
  for (let i = 0; i + batch <= fixes.length; i += batch) bytes += payloadBytes(encodeFixes(fixes.slice(i, i + batch), form));
  return bytes / (Math.floor(fixes.length / batch) * batch);
};
const rows = PAYLOAD_FORMS.map((form) => ({
  form,
  topic: positionTopicFor(driver, form),
  topicBytes: positionTopicFor(driver, form).length,
  bytesPerFixSingle: Number(perFix(form, 1).toFixed(1)),
  bytesPerFixBatchOf7: Number(perFix(form, 7).toFixed(1)),
}));
console.table(rows);
