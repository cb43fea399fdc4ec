#!/usr/bin/env bash
# Build the release: what the Docker image ships under /app, runnable by plain `node` (docs/image.md).
#
#   scripts/release.sh [outdir]          (default dist/release; needs the dev dependencies: npm ci first)
#
# Layout of <outdir>:
#   dist/apps/<app>/src/main.js   the four entry points (consensus, lock, txn, cli = synodctl)
#   dist/libs/<lib>/src/*.js      the libraries they import, @app/<lib> rewritten to relative paths
#   proto/                        the .proto tree (SYNOD_PROTO_ROOT)
#   package.json, package-lock.json, node_modules/   production dependencies only
#
# The Dockerfile's build stage runs this script, and test/release.spec.ts runs it and starts every service from
# its output through docker/entrypoint.sh, so CI checks exactly what the image contains.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/dist/release}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
case "$OUT" in
  "$ROOT"|/) echo "release: refusing to use $OUT as the output directory" >&2; exit 2 ;;
esac
cd "$ROOT"
if [ ! -x node_modules/.bin/tsc ]; then
  echo "release: node_modules/.bin/tsc is missing: run 'npm ci' first" >&2
  exit 1
fi

start=$(date +%s)
echo "release: building into $OUT"
# Start from an empty directory, but keep an installed node_modules only if the lock file is unchanged
# (it is removed below otherwise), so repeated local builds stay fast.
find "$OUT" -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} +

# 1. Compile the four entry points and everything they import (scripts/release/tsconfig.release.json).
node_modules/.bin/tsc -p scripts/release/tsconfig.release.json --outDir "$OUT/dist"

# 2. Resolve @app/* imports, write the production package.json (scripts/release/finalize.mjs).
node scripts/release/finalize.mjs "$OUT"

# 3. The .proto tree.
cp -R proto "$OUT/proto"

# 4. Production dependencies, at the versions of the repository's lock file. `npm install` (not `npm ci`):
#    the release's package.json has no devDependencies (and may promote a runtime-used one), so it does not
#    match the root lock file exactly; npm keeps every locked version that still fits and prunes the rest.
#    --prefer-offline takes tarballs from the npm cache when it has them.
cp package-lock.json "$OUT/package-lock.json"
if [ -d "$OUT/node_modules" ] && ! cmp -s "$OUT/node_modules/.release-lock" package-lock.json; then
  rm -rf "$OUT/node_modules"
fi
(cd "$OUT" && npm install --omit=dev --no-audit --no-fund --prefer-offline --loglevel=error)
cp package-lock.json "$OUT/node_modules/.release-lock"

# 5. Checks: no dev tooling shipped, every entry point present.
for dev in typescript jest tsx @swc/core eslint; do
  if [ -e "$OUT/node_modules/$dev" ]; then
    echo "release: $OUT/node_modules/$dev is a dev dependency and must not be shipped" >&2
    exit 1
  fi
done
for main in consensus lock txn cli; do
  [ -f "$OUT/dist/apps/$main/src/main.js" ] || { echo "release: dist/apps/$main/src/main.js missing" >&2; exit 1; }
done
echo "release: done in $(( $(date +%s) - start ))s ($(du -sh "$OUT" | cut -f1))"
