/** A TCP port the kernel says is free now (bind to port 0 on every interface, read it, let it go), for a server started next. */
export async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const free = probe.port!;
  await probe.stop(true);
  return free;
}
