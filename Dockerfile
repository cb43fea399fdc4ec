# syntax=docker/dockerfile:1
# One image for every Synod program; the command picks it (docs/image.md):
#   docker run synod consensus --node-id 1 ...   |  lock ...  |  txn ...  |  synodctl ...
# Build: docker build -t synod:dev .

# --- build: dev dependencies, then scripts/release.sh (the same script CI runs in test/release.spec.ts) ---
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN bash scripts/release.sh /release

# --- runtime: the release output (production dependencies only, proto/) and the entry point ---
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    SYNOD_RELEASE_DIR=/app \
    SYNOD_PROTO_ROOT=/app/proto \
    SYNOD_DATA_DIR=/data
RUN groupadd --system --gid 10001 synod \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin synod \
 && mkdir -p /data \
 && chown 10001:10001 /data
WORKDIR /app
COPY --from=build --chown=root:root /release/ /app/
COPY --chown=root:root --chmod=0755 docker/entrypoint.sh /app/entrypoint.sh
USER 10001:10001
VOLUME ["/data"]
# consensus: client 2379, peer 2380, metrics 2381; lock: 2390/2391; txn: 2395/2396
EXPOSE 2379 2380 2381 2390 2391 2395 2396
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["consensus"]
