/**
 * A TCP proxy the tests can cut: a worker talks to PostgreSQL through it, and `cut()` drops every connection and
 * refuses new ones, as if the database went away; `restore()` lets them through again.
 */
import { createServer, connect, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface TcpProxy {
  port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let open = true;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: targetHost, port: targetPort, noDelay: true });
    client.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The same proxy in a process of its own, so a busy benchmark process (a simulated fleet on its event loop) does not
 * delay the traffic it carries. The child prints its port; `cut()` and `restore()` are signals to it (SIGUSR1,
 * SIGUSR2), taking effect as soon as it handles them.
 */
export async function spawnTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy & { pid: number }> {
  // stdin is a pipe the child watches: when this process ends, however it ends, the pipe closes and the proxy exits.
  const proc = Bun.spawn(["bun", import.meta.path, targetHost, String(targetPort)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(`the proxy process exited (${await proc.exited})`);
      buffered += decoder.decode(value);
    }
  };
  const port = Number(/^port (\d+)$/.exec(await nextLine())?.[1]);
  if (!port) throw new Error("the proxy process did not say its port");
  return {
    port,
    pid: proc.pid,
    cut: () => proc.kill("SIGUSR1"),
    restore: () => proc.kill("SIGUSR2"),
    close: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

if (import.meta.main) {
  const [host, port] = process.argv.slice(2);
  const proxy = await startTcpProxy(host!, Number(port));
  process.on("SIGUSR1", () => proxy.cut());
  process.on("SIGUSR2", () => proxy.restore());
  process.on("SIGTERM", () => void proxy.close().then(() => process.exit(0)));
  process.stdin.on("end", () => void proxy.close().then(() => process.exit(0)));
  process.stdin.resume();
  console.log(`port ${proxy.port}`);
}
