#!/usr/bin/env bash
# Prepare a fresh machine for `npm test`: install Debian packages the tests need (only when missing; the
# machine runs as root), then the npm dependencies. Later services add their servers (etcd, Redis) to DEB.
set -euo pipefail
cd "$(dirname "$0")/.."
DEB=("prometheus:promtool")  # package:binary — later services add etcd-server:etcd, redis-server:redis-server
missing=()
for spec in "${DEB[@]}"; do
  pkg="${spec%%:*}"; bin="${spec##*:}"
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
npm ci --no-audit --no-fund
