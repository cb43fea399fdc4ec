/** A small leveled logger writing one line per message to stderr: `<ISO time> <level> [member <id>] <message>`. */
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 } as const;

export function createLogger(id: number, level: keyof typeof LEVELS): Logger {
  const min = LEVELS[level];
  const line = (l: keyof typeof LEVELS, msg: string): void => {
    if (LEVELS[l] >= min) process.stderr.write(`${new Date().toISOString()} ${l.padEnd(5)} [member ${id}] ${msg}\n`);
  };
  return {
    debug: (m) => line('debug', m),
    info: (m) => line('info', m),
    warn: (m) => line('warn', m),
    error: (m) => line('error', m),
  };
}
