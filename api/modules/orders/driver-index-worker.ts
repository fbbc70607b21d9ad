/**
 * The dispatch index's reader thread (api/modules/orders/driver-index.ts, readerInWorker): reads the available
 * drivers on its own connection, parses them and builds the tree off the API's event loop, and hands the result over
 * as transferred buffers. One request at a time from its one owner; a failed read answers with its message.
 */
import { connectDatabase, type Sql } from "../../../lib/db.ts";
import { readSnapshot, toPortable, transferList } from "./driver-index.ts";

declare const self: Worker;
let sql: Sql | undefined;

self.onmessage = async (event: MessageEvent<{ id: number; databaseUrl: string }>) => {
  const { id, databaseUrl } = event.data;
  try {
    sql ??= connectDatabase(databaseUrl, { max: 1, application: "api-dispatch-index" });
    const snapshot = toPortable(await readSnapshot(sql));
    self.postMessage({ id, snapshot }, transferList(snapshot));
  } catch (error) {
    self.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
};
