import { expect, test } from "bun:test";
import { formatReport, parseFleetArgs, type FleetStats } from "../../sim/fleet.ts";

test("the command line has the documented defaults", () => {
  const args = parseFleetArgs(["--", "--drivers", "2000"]);
  expect(args).toMatchObject({
    drivers: 2000, rateHz: 0.25, batch: 1, form: "json", ordersPerMin: 60, durationS: 0, perConnection: 500, qos: 1,
  });
  expect(args.city.name).toBe("nyc");
  expect(parseFleetArgs([]).drivers).toBeUndefined();
  expect(parseFleetArgs(["--rate-hz", "1", "--batch", "5", "--form", "binary", "--orders-per-min", "0", "--qos", "0"])).toMatchObject({
    rateHz: 1, batch: 5, form: "binary", ordersPerMin: 0, qos: 0,
  });
});

test("bad values name their flag", () => {
  expect(() => parseFleetArgs(["--rate-hz", "0"])).toThrow("--rate-hz");
  expect(() => parseFleetArgs(["--drivers", "many"])).toThrow("--drivers");
  expect(() => parseFleetArgs(["--qos", "2"])).toThrow("--qos");
  expect(() => parseFleetArgs(["--form", "xml"])).toThrow("--form");
  expect(() => parseFleetArgs(["--warp"])).toThrow();
  expect(() => parseFleetArgs(["--phones"])).toThrow("--sign-in");
  expect(() => parseFleetArgs(["--sign-in", "--ca", "ca.crt"])).toThrow("--phones");
});

test("--phones: the phones run phone/client.ts, over the URL and CA given", () => {
  expect(parseFleetArgs(["--sign-in", "--phones", "--phone-url", "mqtts://127.0.0.1:8883", "--ca", "ca.crt"])).toMatchObject({
    signIn: true, phones: true, phoneUrl: "mqtts://127.0.0.1:8883", caFile: "ca.crt",
  });
  expect(parseFleetArgs(["--sign-in"])).toMatchObject({ signIn: true, phones: false, phoneUrl: undefined });
});

test("with phones the report line counts them by the mode the server pushed", () => {
  const at = (elapsedS: number, sent: number, messages: number): FleetStats => ({
    drivers: 2_000, connections: 2_000, connected: 2_000, elapsedS, targetRate: 500, offered: sent, sent, messages,
    inFlight: 0, buffered: 2_100, dropped: 0, shed: 0, errors: 0, dispatched: 120, modes: { live: 120, idle: 1_878, off: 2 },
  });
  const line = formatReport(at(10, 5_000, 1_000), at(15, 7_500, 1_600), undefined);
  expect(line).toContain("sent 500/s (100.0%) in 120 messages/s");
  expect(line).toContain("modes live 120 idle 1878 off 2");
});

test("the report line gives offered and sent rates over the window", () => {
  const at = (elapsedS: number, offered: number, sent: number): FleetStats => ({
    drivers: 100_000, connections: 200, connected: 200, elapsedS, targetRate: 25_000, offered, sent, messages: sent,
    inFlight: 12, buffered: 0, dropped: 0, shed: 0, errors: 0, dispatched: 3,
  });
  const line = formatReport(at(10, 250_000, 249_000), at(15, 375_000, 374_000), undefined);
  expect(line).toContain("offered 25000/s (target 25000/s)");
  expect(line).toContain("sent 25000/s (100.0%) in 25000 messages/s");
  expect(line).not.toContain("modes");
  expect(line).toContain("200/200 connections");
  expect(line.split("\n")).toHaveLength(1);
});
