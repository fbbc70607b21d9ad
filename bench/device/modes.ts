/**
 * The four ways bench:device's phone reports the same route, each replayed `scale` times faster than real time:
 *   a  HTTPS PATCH every 4 s, a new connection (TLS handshake) each time
 *   b  HTTPS PATCH every 4 s on one keep-alive connection
 *   c  MQTT 5 over TLS, JSON v1, QoS 1, every fix as it is taken
 *   d  this project's phone client (phone/client.ts): binary form, topic alias, the server's reporting mode
 *
 * Route time: the replay marks the wall time at which each route moment happens (an anchor). An event's route time
 * is its anchor's route time plus the real (unscaled) time since the anchor, so the network's own delays stay real
 * while the gaps between fixes are the route's 4 s (docs/phone.md, "Time compression").
 */
import mqtt, { type MqttClient } from "mqtt";
import { decodeMqttMessage } from "../../lib/position.ts";
import { createPhoneClient, type PhoneClient } from "../../phone/client.ts";
import type { ReportingMode } from "../../phone/reporting-policy.ts";
import { isWatched, type RouteFix } from "./route.ts";

export const MODES = ["a", "b", "c", "d"] as const;
export type ModeName = (typeof MODES)[number];
export const MODE_LABELS: Record<ModeName, string> = {
  a: "(a) HTTPS, new connection per fix",
  b: "(b) HTTPS keep-alive",
  c: "(c) MQTT/TLS JSON QoS 1 per fix",
  d: "(d) adaptive MQTT/TLS (phone client)",
};

export interface Setup {
  route: RouteFix[];
  scale: number;
  driverId: string;
  /** A fix's `tst` is baseTst + its route time: an hour in the past, so the API's clock checks accept every fix. */
  baseTst: number;
  ca: string;
  mqttTlsUrl: string;
  /** The watcher's (and the mode commands') plain port: not captured. */
  mqttPlainUrl: string;
  mqttUser: string;
  mqttPassword: string;
  apiBase: string;
  apiToken: string;
}

interface Anchor {
  wallMs: number;
  t: number;
}

export interface ModeTrace {
  mode: ModeName;
  anchors: Anchor[];
  /** Route time each fix (by its route time) reached the server: the broker's subscriber, or the API's 202. */
  receipts: Map<number, number>;
  /** Messages (MQTT publishes or HTTP requests) and the route times of the fixes in each. */
  sends: { t: number; fixes: number }[];
  commands: { t: number; mode: ReportingMode }[];
  errors: string[];
}

export const nowMs = () => performance.timeOrigin + performance.now();

/** Route time of a wall-clock moment. */
export function routeTime(anchors: readonly Anchor[], wallMs: number): number {
  let lo = 0;
  let hi = anchors.length - 1;
  if (hi < 0) throw new Error("no anchors yet");
  if (wallMs < anchors[0]!.wallMs) return anchors[0]!.t - (anchors[0]!.wallMs - wallMs) / 1000;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (anchors[mid]!.wallMs <= wallMs) lo = mid;
    else hi = mid - 1;
  }
  return anchors[lo]!.t + (wallMs - anchors[lo]!.wallMs) / 1000;
}

const modeFor = (fix: RouteFix): ReportingMode => (isWatched(fix.state) ? "live" : "idle");

async function eventually(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(20);
  }
  return true;
}

/** Runs one mode over the whole route. `capture` brackets the phone's traffic (started before it connects). */
export async function runMode(mode: ModeName, setup: Setup, runId: string): Promise<ModeTrace> {
  const trace: ModeTrace = { mode, anchors: [], receipts: new Map(), sends: [], commands: [], errors: [] };
  const { route, scale, baseTst } = setup;
  const fixOf = (rf: RouteFix) => ({ lat: rf.lat, lon: rf.lon, tst: baseTst + rf.t, acc: rf.acc, vel: rf.vel, cog: rf.cog, batt: rf.batt });
  // A fix's receipt in route time: its send's route time plus the real time the trip took. (Mapping the receipt's
  // own wall time through the anchors would stretch a 100 ms hiccup into seconds of route time.)
  const sentAt = new Map<number, { wallMs: number; t: number }>();
  const markSent = (fixT: number) => {
    const wallMs = nowMs();
    if (!sentAt.has(fixT)) sentAt.set(fixT, { wallMs, t: routeTime(trace.anchors, wallMs) });
  };
  const received = (fixT: number) => {
    const sent = sentAt.get(fixT);
    if (sent && !trace.receipts.has(fixT)) trace.receipts.set(fixT, sent.t + (nowMs() - sent.wallMs) / 1000);
  };

  // The server side of MQTT modes: a subscriber on the broker's plain port marks each fix's arrival.
  const watcher: MqttClient = await mqtt.connectAsync(setup.mqttPlainUrl, {
    protocolVersion: 5,
    clientId: `bench-device-watch-${runId}-${mode}`,
    username: setup.mqttUser,
    password: setup.mqttPassword,
  });
  const cmdTopic = `drivers/${setup.driverId}/cmd`;
  watcher.on("message", (topic, payload) => {
    const decoded = decodeMqttMessage(topic, payload);
    if (decoded.ok) for (const p of decoded.positions) received(Math.round((p.tst - baseTst) * 1000) / 1000);
  });
  await watcher.subscribeAsync([`drivers/${setup.driverId}/location`, `drivers/${setup.driverId}/b`], { qos: 1 });
  // No mode left from an earlier run: the phone starts from "no retained message yet = idle".
  await watcher.publishAsync(cmdTopic, "", { qos: 1, retain: true });

  let phone: PhoneClient | undefined;
  let takeFix: (rf: RouteFix) => void;
  const pendingRequests = new Set<Promise<void>>();
  if (mode === "a" || mode === "b") {
    const url = `${setup.apiBase}/drivers/${setup.driverId}/location`;
    takeFix = (rf) => {
      trace.sends.push({ t: rf.t, fixes: 1 });
      markSent(rf.t);
      const request = fetch(url, {
        method: "PATCH",
        headers: {
          authorization: `Bearer ${setup.apiToken}`,
          "content-type": "application/json",
          ...(mode === "a" ? { connection: "close" } : {}),
        },
        body: JSON.stringify(fixOf(rf)),
        keepalive: mode === "b",
        tls: { ca: setup.ca },
      } as RequestInit)
        .then(async (response) => {
          await response.arrayBuffer();
          if (response.status === 202) received(rf.t);
          else trace.errors.push(`PATCH ${response.status}`);
        })
        .catch((error) => void trace.errors.push(String(error)));
      pendingRequests.add(request);
      void request.finally(() => pendingRequests.delete(request));
    };
  } else {
    phone = createPhoneClient({
      url: setup.mqttTlsUrl,
      username: setup.mqttUser,
      password: setup.mqttPassword,
      driverId: setup.driverId,
      clientId: `bench-device-phone-${runId}-${mode}`,
      ca: setup.ca,
      form: mode === "c" ? "json" : "binary",
      fixedMode: mode === "c" ? "live" : undefined,
      // The baseline is plain MQTT: no alias, the common 60 s keep-alive. (d) is the client's defaults.
      ...(mode === "c" ? { keepaliveSeconds: 60, mqtt: { autoAssignTopicAlias: false } } : {}),
      onSend: (sent) => {
        trace.sends.push({ t: routeTime(trace.anchors, nowMs()), fixes: sent.fixes.length });
        for (const f of sent.fixes) markSent(Math.round((f.tst - baseTst) * 1000) / 1000);
      },
    });
    const p = phone;
    takeFix = (rf) => p.addFix(fixOf(rf));
  }

  const start = nowMs() + 50;
  trace.anchors.push({ wallMs: start - 60_000, t: -60_000 / 1000 }); // before the route: connection set-up
  if (phone) await phone.start();
  let state: RouteFix["state"] | undefined;
  for (const rf of route) {
    const due = start + (rf.t * 1000) / scale;
    const wait = due - nowMs();
    if (wait > 0) await Bun.sleep(wait);
    trace.anchors.push({ wallMs: nowMs(), t: rf.t });
    if (mode === "d" && rf.state !== state) {
      // The server writes the mode when the driver's state changes (the modes service; here the bench, as tester).
      const next = modeFor(rf);
      if (state === undefined || modeFor({ ...rf, state }) !== next) {
        trace.commands.push({ t: rf.t, mode: next });
        void watcher.publishAsync(cmdTopic, JSON.stringify({ v: 1, mode: next, state: rf.state, at: new Date().toISOString() }), {
          qos: 1,
          retain: true,
        });
      }
    }
    state = rf.state;
    takeFix(rf);
  }
  // Everything sent has arrived (what (d) still holds in its idle batch was never sent).
  const sentFixes = () => trace.sends.reduce((n, s) => n + s.fixes, 0);
  if (!(await eventually(() => trace.receipts.size >= sentFixes() && pendingRequests.size === 0, 15_000))) {
    trace.errors.push(`${sentFixes() - trace.receipts.size} sent fixes never arrived`);
  }
  await phone?.drained();
  await phone?.stop({ force: true });
  await watcher.publishAsync(cmdTopic, "", { qos: 1, retain: true });
  await watcher.endAsync();
  return trace;
}
