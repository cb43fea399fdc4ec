#!/bin/sh
# Entry point of the Synod image (docs/image.md): one image, the first argument picks the program.
#
#   entrypoint.sh consensus|lock|txn|synodctl [args...]
#
# It execs `node <release>/dist/apps/<app>/src/main.js args...`, so the program is PID 1's direct replacement
# and receives SIGTERM itself (graceful shutdown, leadership transfer). <release> is $SYNOD_RELEASE_DIR, /app in
# the image; test/release.spec.ts points it at a release built by scripts/release.sh.
set -eu
RELEASE_DIR="${SYNOD_RELEASE_DIR:-/app}"

usage() {
  cat >&2 <<USAGE
usage: entrypoint.sh <command> [args...]
commands:
  consensus   a consensus cluster member   (--help for its flags; SYNOD_* environment)
  lock        the lock service
  txn         the transaction coordinator
  synodctl    the command line client
USAGE
}

if [ "$#" -eq 0 ]; then
  echo "entrypoint.sh: missing command" >&2
  usage
  exit 2
fi
cmd="$1"
shift
case "$cmd" in
  consensus) app=consensus ;;
  lock) app=lock ;;
  txn) app=txn ;;
  synodctl) app=cli ;;
  help|-h|--help) usage; exit 0 ;;
  *)
    echo "entrypoint.sh: unknown command '$cmd'" >&2
    usage
    exit 2
    ;;
esac

main="$RELEASE_DIR/dist/apps/$app/src/main.js"
if [ ! -f "$main" ]; then
  echo "entrypoint.sh: $main not found (SYNOD_RELEASE_DIR=$RELEASE_DIR is not a release built by scripts/release.sh)" >&2
  exit 1
fi
export SYNOD_PROTO_ROOT="${SYNOD_PROTO_ROOT:-$RELEASE_DIR/proto}"
exec node --enable-source-maps "$main" "$@"
