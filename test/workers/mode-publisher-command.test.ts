// The command the mode publisher sends (contract with phone/) and what it accepts from the `driver_mode` channel.
import { expect, test } from "bun:test";
import { commandTopic, modeCommand, parseModeNotice } from "../../workers/mode-publisher/command.ts";

const ID = "6f1c2f7e-3b1a-4c55-9a4e-0d2b8c1e7a10";

test.each([
  ["a notice as PostgreSQL's json_build_object writes it",
    `{"driver_id" : "${ID.toUpperCase()}", "mode" : "live", "state" : "assigned", "at" : "2026-11-30T01:48:50.123456+00:00"}`,
    { driverId: ID, mode: "live", state: "assigned", at: "2026-11-30T01:48:50.123Z" }],
  ["a marker (not JSON)", "before-123", undefined],
  ["JSON, not an object", "[1,2]", undefined],
  ["an unknown mode", `{"driver_id":"${ID}","mode":"turbo","state":"assigned","at":"2026-11-30T01:48:50Z"}`, undefined],
  ["a driver id that is not a UUID", `{"driver_id":"x","mode":"idle","state":"available","at":"2026-11-30T01:48:50Z"}`, undefined],
  ["a state that is not a name", `{"driver_id":"${ID}","mode":"idle","state":"a b","at":"2026-11-30T01:48:50Z"}`, undefined],
  ["no time", `{"driver_id":"${ID}","mode":"off","state":"offline"}`, undefined],
  ["a time that is not one", `{"driver_id":"${ID}","mode":"off","state":"offline","at":"soon"}`, undefined],
] as const)("%s", (_name, payload, expected) => {
  expect(parseModeNotice(payload)).toEqual(expected as never);
});

test("the retained command and its topic", () => {
  const change = { driverId: ID, mode: "idle" as const, state: "available", at: "2026-11-30T01:48:50.123Z" };
  expect(JSON.parse(modeCommand(change))).toEqual({ v: 1, mode: "idle", state: "available", at: "2026-11-30T01:48:50.123Z" });
  expect(commandTopic(ID)).toBe(`drivers/${ID}/cmd`);
  expect(commandTopic(ID, "test/run/")).toBe(`test/run/drivers/${ID}/cmd`);
});
