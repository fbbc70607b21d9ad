// The `reason` and `refused` headers of a dead letter (pure).
import { expect, test } from "bun:test";
import { formatRefused, mainReason, parseRefused, type Refusal } from "../../lib/dead-letter.ts";

const r = (index: number, reason: Refusal["reason"]): Refusal => ({ index, reason });

test.each([
  ["one", [r(3, "impossible_speed")], "3:impossible_speed"],
  ["runs of one reason", [r(1, "invalid_coordinates"), r(2, "invalid_coordinates"), r(3, "invalid_coordinates")], "1-3:invalid_coordinates"],
  ["mixed, out of order", [r(7, "future_timestamp"), r(3, "impossible_speed"), r(4, "impossible_speed")], "3-4:impossible_speed;7:future_timestamp"],
  ["a gap breaks a run", [r(1, "low_accuracy"), r(3, "low_accuracy")], "1:low_accuracy;3:low_accuracy"],
  ["a reason change breaks a run", [r(1, "low_accuracy"), r(2, "too_old"), r(3, "low_accuracy")], "1:low_accuracy;2:too_old;3:low_accuracy"],
  ["none", [], ""],
] as const)("%s → %s, and back", (_name, refusals, header) => {
  expect(formatRefused(refusals)).toBe(header);
  expect(parseRefused(header)).toEqual([...refusals].sort((a, b) => a.index - b.index));
});

test("499 refused positions of one message make a header of a few bytes", () => {
  const refusals = Array.from({ length: 499 }, (_, i) => r(i + 1, "invalid_coordinates"));
  expect(formatRefused(refusals)).toBe("1-499:invalid_coordinates");
  expect(parseRefused("1-499:invalid_coordinates").length).toBe(499);
});

test.each([
  ["the most common", [r(0, "too_old"), r(1, "impossible_speed"), r(2, "impossible_speed")], "impossible_speed"],
  ["a tie goes to the first refused", [r(5, "too_old"), r(2, "low_accuracy")], "low_accuracy"],
] as const)("reason header: %s", (_name, refusals, reason) => {
  expect(mainReason(refusals)).toBe(reason);
});

test("a malformed refused header is an error, not a silent empty list", () => {
  expect(() => parseRefused("3-impossible_speed")).toThrow(SyntaxError);
});
