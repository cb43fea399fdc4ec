/**
 * Small helpers shared by the two example services: flags with environment fallbacks (node:util parseArgs),
 * a stderr logger, bounded retries.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface FlagSpec {
  /** Environment variable read when the flag is absent. */
  env?: string;
  default?: string;
  /** Absent (and no env, no default) → '' instead of an error. */
  optional?: boolean;
  help: string;
}

/** Parses `--name value` flags (each with an env fallback and a default); `--help` prints usage and exits 0. */
export function readFlags<K extends string>(program: string, specs: Record<K, FlagSpec>, argv = process.argv.slice(2)): Record<K, string> {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const k of Object.keys(specs)) options[k] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (try --help)`);
  }
  if (values.help) {
    const lines = Object.entries<FlagSpec>(specs).map(([k, s]) => `  --${k.padEnd(24)} ${s.help}${s.env ? ` [env ${s.env}]` : ''}${s.default !== undefined ? ` (default ${s.default})` : ''}`);
    process.stdout.write(`usage: npx tsx ${program} [flags]\n${lines.join('\n')}\n`);
    process.exit(0);
  }
  const out = {} as Record<K, string>;
  for (const [k, s] of Object.entries<FlagSpec>(specs)) {
    const v = (values[k] as string | undefined) ?? (s.env ? process.env[s.env] : undefined) ?? s.default ?? (s.optional ? '' : undefined);
    if (v === undefined || (v === '' && !s.optional)) throw new UsageError(`--${k} is required${s.env ? ` (or set ${s.env})` : ''}`);
    out[k as K] = v;
  }
  return out;
}

export function port(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--${name} must be a port number (0..65535), got "${v}"`);
  return n;
}

export function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got "${v}"`);
  return n;
}

const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$/;

export function endpoint(name: string, v: string): string {
  if (!HOST_PORT.test(v)) throw new UsageError(`--${name} must be host:port, got "${v}"`);
  return v;
}

export function endpoints(name: string, v: string): string[] {
  const list = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new UsageError(`--${name} needs at least one host:port`);
  return list.map((e) => endpoint(name, e));
}

export interface Logger {
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
  debug(m: string): void;
}

export function logger(tag: string, debug = false): Logger {
  const line = (level: string, m: string): void => void process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} [${tag}] ${m}\n`);
  return { info: (m) => line('info', m), warn: (m) => line('warn', m), error: (m) => line('error', m), debug: (m) => (debug ? line('debug', m) : undefined) };
}

/** Runs `main`; a UsageError exits 2 with its message, anything else exits 1. */
export function run(program: string, main: () => Promise<void>): void {
  main().catch((err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`${program}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${program}: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
