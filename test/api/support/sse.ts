/** Reads Server-Sent Events from a Response body, one block (up to a blank line) at a time. */
export interface SseBlock {
  event?: string;
  data?: string;
  comments: string[];
  retry?: number;
}

export function sseReader(response: Response) {
  if (!response.body) throw new Error("the response has no body");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let done = false;

  const parse = (block: string): SseBlock => {
    const out: SseBlock = { comments: [] };
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) out.comments.push(line.slice(1).trim());
      else if (line.startsWith("event: ")) out.event = line.slice(7);
      else if (line.startsWith("data: ")) out.data = (out.data === undefined ? "" : `${out.data}\n`) + line.slice(6);
      else if (line.startsWith("retry: ")) out.retry = Number(line.slice(7));
    }
    return out;
  };

  const read = async (timeoutMs: number): Promise<void> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no SSE data within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const chunk = await Promise.race([reader.read(), timeout]);
      if (chunk.done) done = true;
      else buffer += decoder.decode(chunk.value, { stream: true });
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    /** The next block, whatever it is; undefined when the stream ended. */
    async next(timeoutMs = 10_000): Promise<SseBlock | undefined> {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          return parse(block);
        }
        if (done) return undefined;
        await read(timeoutMs);
      }
    },
    /** The next named event (skipping heartbeats and the retry hint), with its data parsed as JSON. */
    async nextEvent<T = any>(timeoutMs = 10_000): Promise<{ event: string; data: T } | undefined> {
      for (;;) {
        const block = await this.next(timeoutMs);
        if (!block) return undefined;
        if (block.event !== undefined) return { event: block.event, data: JSON.parse(block.data ?? "null") as T };
      }
    },
    get ended() {
      return done;
    },
    cancel: () => reader.cancel(),
  };
}
