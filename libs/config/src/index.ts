/**
 * @app/config — what the services' configuration loaders share: the error that stops a process with exit
 * code 2, flags parsed over an environment (environment variables, overridden by flags), and the mutual-TLS
 * file triple.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';

/** A bad configuration value: the process prints the message and exits with code 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Parses `argv` with `cmd` while `env` stands in for the process environment (commander reads `.env()`
 * defaults from process.env); the real environment is restored afterwards.
 */
export function parseWithEnv(cmd: Command, argv: string[], env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return cmd.parse(argv, { from: 'user' }).opts();
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The `--tls-ca/--tls-cert/--tls-key` files: none → undefined; all three → their contents; else ConfigError. */
export function readTlsFiles(ca: string | undefined, cert: string | undefined, key: string | undefined): TlsMaterial | undefined {
  const files = [ca, cert, key];
  if (!files.some(Boolean)) return undefined;
  if (!files.every(Boolean)) throw new ConfigError('TLS needs all three of --tls-ca, --tls-cert and --tls-key');
  const read = (f: string, flag: string): Buffer => {
    try {
      return readFileSync(f);
    } catch (err) {
      throw new ConfigError(`${flag}: cannot read ${f}: ${(err as Error).message}`);
    }
  };
  return { ca: read(ca!, '--tls-ca'), cert: read(cert!, '--tls-cert'), key: read(key!, '--tls-key') };
}
