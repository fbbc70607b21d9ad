import type { Sql } from "../../../lib/db.ts";
import type { KafkaLink } from "../../kafka/link.ts";
import type { OrderFeed } from "../tracking/feed.ts";
import type { Checks } from "./model.ts";

export interface ReadinessDeps {
  sql: Sql;
  kafka: KafkaLink;
  positionsTopic: string;
  /** The live-tracking feed: ready once its LISTEN is active (the probe issues it if the start-up has not yet). */
  feed: Pick<OrderFeed, "start">;
  /** A dependency that does not answer by then counts as down: a probe must answer before its caller gives up. */
  probeTimeoutMs?: number;
}

export interface Readiness {
  checks: Checks;
  problems: string[];
}

function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const reason = (error: unknown) => (error instanceof Error ? error.message : String(error));

export function readinessService(deps: ReadinessDeps) {
  const timeoutMs = deps.probeTimeoutMs ?? 2_000;
  const database = async () => {
    await deps.sql`select 1`;
  };
  // Asking for the positions topic's metadata proves the broker answers this producer now.
  const kafka = () => deps.kafka.probe(deps.positionsTopic, timeoutMs);

  return {
    async check(): Promise<Readiness> {
      const [db, broker, feed] = await Promise.allSettled([
        within(database(), timeoutMs),
        within(kafka(), timeoutMs),
        within(deps.feed.start(), timeoutMs),
      ]);
      const problems: string[] = [];
      if (db.status === "rejected") problems.push(`database: ${reason(db.reason)}`);
      if (broker.status === "rejected") problems.push(`kafka: ${reason(broker.reason)}`);
      if (feed.status === "rejected") problems.push(`live feed (LISTEN): ${reason(feed.reason)}`);
      const up = (r: PromiseSettledResult<unknown>) => (r.status === "fulfilled" ? "up" : "down");
      return { checks: { database: up(db), kafka: up(broker), liveFeed: up(feed) }, problems };
    },
  };
}
