import { t } from "elysia";

export const Alive = t.Object({ status: t.Literal("ok") });

const Check = t.UnionEnum(["up", "down"]);
export const Ready = t.Object({
  status: t.Literal("ready"),
  checks: t.Object({ database: Check, kafka: Check, liveFeed: Check }),
});
export type Checks = (typeof Ready.static)["checks"];
