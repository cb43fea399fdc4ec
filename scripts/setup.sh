#!/usr/bin/env bash
# Prepare a fresh machine for `npm test`: install Debian packages the tests need (only when missing; the
# machine runs as root), then the npm dependencies. 
set -euo pipefail
cd "$(dirname "$0")/.."
# package:binary. etcd (lock/txn backend, benchmark anchor), h2load (benchmarks), Redis (lock backends redis and
# redlock), PostgreSQL 15 server binaries (lock backend postgres, 2PC participants; /usr/lib/postgresql/15/bin).
DEB=("prometheus:promtool" "etcd-server:etcd" "nghttp2-client:h2load" "redis-server:redis-server" "postgresql-15:/usr/lib/postgresql/15/bin/postgres")
missing=()
for spec in "${DEB[@]}"; do
  pkg="${spec%%:*}"; bin="${spec##*:}"
  if [[ "$bin" == /* ]]; then [ -x "$bin" ] || missing+=("$pkg"); else command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
npm ci --no-audit --no-fund
