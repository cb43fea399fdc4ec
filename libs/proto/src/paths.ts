/**
 * Where the `.proto` tree is. `proto/` sits at the repository root; the code that loads it may run from
 * source (tsx, jest: libs/proto/src/paths.ts) or from a build (dist/apps/<app>/libs/proto/src/paths.js, or an
 * image that copies `proto/` next to `dist/`). So: the `SYNOD_PROTO_ROOT` environment variable if set, else
 * the first `proto/` holding `synod/` found walking up from this file, else `./proto` under the working
 * directory.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROTO_FILES = {
  coordination: 'synod/consensus/v1/coordination.proto',
  cluster: 'synod/consensus/v1/cluster.proto',
  peer: 'synod/peer/v1/peer.proto',
  lock: 'synod/lock/v1/lock.proto',
  txn: 'synod/txn/v1/txn.proto',
} as const;

let cached: string | undefined;

function isProtoRoot(dir: string): boolean {
  return existsSync(join(dir, PROTO_FILES.coordination));
}

/** The directory that holds `synod/...` (the include path for every proto-loader call). */
export function protoRoot(): string {
  if (cached) return cached;
  const env = process.env.SYNOD_PROTO_ROOT;
  if (env) {
    const dir = resolve(env);
    if (!isProtoRoot(dir)) throw new Error(`SYNOD_PROTO_ROOT=${env} does not contain ${PROTO_FILES.coordination}`);
    return (cached = dir);
  }
  const tried: string[] = [];
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'proto');
    tried.push(candidate);
    if (isProtoRoot(candidate)) return (cached = candidate);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  const cwd = resolve('proto');
  tried.push(cwd);
  if (isProtoRoot(cwd)) return (cached = cwd);
  throw new Error(`cannot find the proto/ tree (looked in ${tried.join(', ')}); set SYNOD_PROTO_ROOT to the directory holding synod/`);
}
