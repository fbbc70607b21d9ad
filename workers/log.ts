/** One-line, greppable log records: `2026-11-25T16:00:00.000Z bridge info started {"port":1883}`. */
export function logger(component: string) {
  const line = (level: string, message: string, fields?: Record<string, unknown>) =>
    `${new Date().toISOString()} ${component} ${level} ${message}${fields ? ` ${JSON.stringify(fields)}` : ""}`;
  return {
    info: (message: string, fields?: Record<string, unknown>) => console.log(line("info", message, fields)),
    warn: (message: string, fields?: Record<string, unknown>) => console.warn(line("warn", message, fields)),
    error: (message: string, fields?: Record<string, unknown>) => console.error(line("error", message, fields)),
  };
}
