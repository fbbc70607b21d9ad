/** postgres.js connections: one factory so every process parses bigint and silences notices the same way. */
import { connect } from "node:net";
import postgres from "postgres";

export type Sql = postgres.Sql<{ bigint: bigint }>;

export function connectDatabase(url: string, options: { max?: number; application?: string } = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connection: { application_name: options.application ?? "tracking" },
    types: { bigint: postgres.BigInt },
    // postgres.js leaves Nagle's algorithm on. Under Node a COPY (CopyData, then CopyDone) then waits for the
    // server's delayed ACK: measured 95 ms per small batch instead of 7 ms.
    socket: ({ host, port }: { host: string[]; port: number[] }) =>
      new Promise((resolve, reject) => {
        const socket = connect({ host: host[0] ?? "127.0.0.1", port: port[0] ?? 5432, noDelay: true });
        socket.once("connect", () => resolve(socket));
        socket.once("error", reject);
      }),
  } as postgres.Options<{}>) as unknown as Sql;
}

/** The SQLSTATE of a PostgreSQL error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined;
}
