/** A small leveled logger for the services: one line per message on stderr, `<ISO time> <level> [<tag>] <message>`. */
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export const LOG_LEVELS = { debug: 0, info: 1, warn: 2, error: 3 } as const;
export type LogLevel = keyof typeof LOG_LEVELS;

export function createLogger(level: LogLevel, tag: string): Logger {
  const min = LOG_LEVELS[level];
  const line = (l: LogLevel, msg: string): void => {
    if (LOG_LEVELS[l] >= min) process.stderr.write(`${new Date().toISOString()} ${l.padEnd(5)} [${tag}] ${msg}\n`);
  };
  return { debug: (m) => line('debug', m), info: (m) => line('info', m), warn: (m) => line('warn', m), error: (m) => line('error', m) };
}
