import { expect, test } from "bun:test";
import { createProgressWatch } from "../../workers/progress-watch.ts";

type Step = ["arrive", number] | ["forward"] | ["check", number, boolean];

// Stalled after 1,000 ms of a waiting message with nothing forwarded.
const cases: { name: string; steps: Step[] }[] = [
  { name: "idle is never a stall", steps: [["check", 0, false], ["check", 60_000, false]] },
  { name: "a message forwarded in time", steps: [["arrive", 0], ["check", 900, false], ["forward"], ["check", 5_000, false]] },
  { name: "a message waiting too long", steps: [["arrive", 0], ["check", 1_000, false], ["check", 1_001, true]] },
  { name: "later arrivals do not move the stall's start", steps: [["arrive", 0], ["arrive", 800], ["check", 1_001, true]] },
  { name: "a forward ends the stall", steps: [["arrive", 0], ["check", 2_000, true], ["forward"], ["check", 2_001, false]] },
  { name: "a new wait starts at its own arrival", steps: [["arrive", 0], ["forward"], ["arrive", 5_000], ["check", 5_900, false], ["check", 6_001, true]] },
];

for (const c of cases) {
  test(`progress watch: ${c.name}`, () => {
    const watch = createProgressWatch(1_000);
    for (const step of c.steps) {
      if (step[0] === "arrive") watch.arrived(step[1]);
      else if (step[0] === "forward") watch.progressed();
      else expect({ at: step[1], stalled: watch.stalled(step[1]) }).toEqual({ at: step[1], stalled: step[2] });
    }
  });
}
