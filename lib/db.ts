/** postgres.js connections: one factory so every process parses bigint and silences notices the same way. */
import postgres from "postgres";

export type Sql = postgres.Sql<{ bigint: bigint }>;

export function connectDatabase(url: string, options: { max?: number; application?: string } = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connection: { application_name: options.application ?? "tracking" },
    types: { bigint: postgres.BigInt },
  }) as unknown as Sql;
}

/** The SQLSTATE of a PostgreSQL error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined;
}
